# GKE Autopilot: Google runs the nodes; pods pay for what they request. Workload Identity is always on
# in Autopilot (pool <project>.svc.id.goog).
resource "google_container_cluster" "autopilot" {
  name             = var.name
  location         = var.region
  enable_autopilot = true

  network    = google_compute_network.vpc.id
  subnetwork = google_compute_subnetwork.gke.id

  ip_allocation_policy {
    cluster_secondary_range_name  = google_compute_subnetwork.gke.secondary_ip_range[0].range_name
    services_secondary_range_name = google_compute_subnetwork.gke.secondary_ip_range[1].range_name
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
  }

  dynamic "master_authorized_networks_config" {
    for_each = length(var.master_authorized_networks) > 0 ? [1] : []
    content {
      dynamic "cidr_blocks" {
        for_each = var.master_authorized_networks
        content {
          cidr_block   = cidr_blocks.value.cidr_block
          display_name = cidr_blocks.value.display_name
        }
      }
    }
  }

  release_channel {
    channel = var.release_channel
  }

  # Nodes run as a dedicated service account with the minimal node role and image pulls from our
  # repository, not as the Compute Engine default account (Editor on the project).
  cluster_autoscaling {
    auto_provisioning_defaults {
      service_account = google_service_account.nodes.email
      oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    }
  }

  deletion_protection = var.deletion_protection

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.nodes,
  ]
}
