# Memorystore for Redis: the bus between replicas, retained messages, offline sessions and the export
# stream. Peered into the VPC; only the three services may reach it (deploy/overlays/gke's
# NetworkPolicy allows exactly reserved_ip_range).
#
# Nothing in the VPC gets in without the AUTH string, and nothing travels in clear: clients speak TLS
# only (port 6378) and verify the server against the instance's own CA. The AUTH string and the CA
# reach the pods as the Kubernetes Secrets redis-auth and redis-ca (scripts/infra-gke-secrets.sh,
# from the sensitive outputs below), never through a ConfigMap or an image.
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

  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"

  # RDB snapshots: what a failure that takes the whole instance (both nodes of STANDARD_HA, the only
  # node of BASIC) loses is bounded by the snapshot period; see README "Security".
  persistence_config {
    persistence_mode    = "RDB"
    rdb_snapshot_period = var.redis_rdb_snapshot_period
  }

  redis_configs = {
    # The export stream and sessions must never be evicted silently: a full Redis refuses writes,
    # which the services count and report.
    "maxmemory-policy" = "noeviction"
  }

  # Offline sessions and the export backlog live here: a plan that would destroy the instance stops.
  deletion_protection = var.deletion_protection

  depends_on = [google_project_service.apis]
}
