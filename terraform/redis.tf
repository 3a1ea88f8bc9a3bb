# Memorystore for Redis: the bus between replicas, retained messages, offline sessions and the export
# stream. Peered into the VPC; only the three services may reach it (deploy/overlays/gke's
# NetworkPolicy allows exactly reserved_ip_range).
resource "google_redis_instance" "cache" {
  name               = "${var.name}-redis"
  display_name       = "MCloudTT bus and state"
  region             = var.region
  tier               = var.redis_tier
  memory_size_gb     = var.redis_memory_size_gb
  redis_version      = var.redis_version
  authorized_network = google_compute_network.vpc.id
  connect_mode       = "DIRECT_PEERING"
  reserved_ip_range  = var.redis_reserved_ip_range

  redis_configs = {
    # The export stream and sessions must never be evicted silently: a full Redis refuses writes,
    # which the services count and report.
    "maxmemory-policy" = "noeviction"
  }

  depends_on = [google_project_service.apis]
}
