output "cluster_name" {
  description = "Name of the GKE Autopilot cluster."
  value       = google_container_cluster.autopilot.name
}

output "cluster_location" {
  description = "Region of the cluster."
  value       = google_container_cluster.autopilot.location
}

output "get_credentials" {
  description = "Command that points kubectl at the cluster."
  value       = "gcloud container clusters get-credentials ${google_container_cluster.autopilot.name} --region ${var.region} --project ${var.project_id}"
}

output "image_repository" {
  description = "Artifact Registry path to push the images to: skaffold's --default-repo."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "redis_host" {
  description = "Memorystore address: REDIS_HOST in deploy/overlays/gke/settings.env."
  value       = google_redis_instance.cache.host
}

output "redis_port" {
  description = "Memorystore port (6378: TLS only); deploy/overlays/gke's EndpointSlice and NetworkPolicy use it."
  value       = google_redis_instance.cache.port
}

output "redis_auth_string" {
  description = "Memorystore AUTH string, for the redis-auth Secret (scripts/infra-gke-secrets.sh). Secret."
  value       = google_redis_instance.cache.auth_string
  sensitive   = true
}

output "redis_server_ca" {
  description = "PEM of Memorystore's server CAs (all of them, so a CA rotation needs no change), for the redis-ca Secret."
  value       = join("", google_redis_instance.cache.server_ca_certs[*].cert)
}

output "broker_ip" {
  description = "Reserved public address of the brokers: BROKER_IP in deploy/overlays/gke/settings.env; point DNS at it."
  value       = google_compute_address.broker.address
}

output "redis_reserved_ip_range" {
  description = "Range Memorystore's address is in: REDIS_CIDR in deploy/overlays/gke/settings.env."
  value       = var.redis_reserved_ip_range
}

output "adapter_service_account" {
  description = "Google service account of the BigQuery adapter: ADAPTER_GSA in deploy/overlays/gke/settings.env."
  value       = google_service_account.adapter.email
}

output "bigquery_table" {
  description = "Fully qualified messages table, project.dataset.table."
  value       = "${var.project_id}.${google_bigquery_table.messages.dataset_id}.${google_bigquery_table.messages.table_id}"
}

output "bigquery_events_table" {
  description = "Fully qualified events (presence) table, project.dataset.table: ADAPTER_BIGQUERY_EVENTS_TABLE is its table id."
  value       = "${var.project_id}.${google_bigquery_table.events.dataset_id}.${google_bigquery_table.events.table_id}"
}
