# One custom-mode VPC: the cluster's nodes have no public addresses and reach the internet (image
# pulls from outside Artifact Registry, none expected) through Cloud NAT; Google APIs through Private
# Google Access.
resource "google_compute_network" "vpc" {
  name                    = "${var.name}-vpc"
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"

  depends_on = [google_project_service.apis]
}

resource "google_compute_subnetwork" "gke" {
  name                     = "${var.name}-gke"
  region                   = var.region
  network                  = google_compute_network.vpc.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.pods_cidr
  }

  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.services_cidr
  }
}

resource "google_compute_router" "nat" {
  name    = "${var.name}-router"
  region  = var.region
  network = google_compute_network.vpc.id
}

resource "google_compute_router_nat" "nat" {
  name                               = "${var.name}-nat"
  router                             = google_compute_router.nat.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# The brokers' public address: a reserved regional IP, so devices and DNS records keep pointing at it
# when the LoadBalancer Service is re-created. deploy/overlays/gke sets it as the Service's
# loadBalancerIP (BROKER_IP in settings.env).
resource "google_compute_address" "broker" {
  name         = "${var.name}-broker"
  region       = var.region
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"
  description  = "MCloudTT brokers: MQTT over TLS (8883) and secure WebSocket (8084)"

  depends_on = [google_project_service.apis]
}
