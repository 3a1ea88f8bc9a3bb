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
  description = "Memorystore port."
  value       = google_redis_instance.cache.port
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
