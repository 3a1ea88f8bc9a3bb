# Service accounts, each with only what it uses.

# The nodes: write logs and metrics (roles/container.defaultNodeServiceAccount) and pull our images.
resource "google_service_account" "nodes" {
  account_id   = "${var.name}-nodes"
  display_name = "MCloudTT GKE nodes"
}

resource "google_project_iam_member" "nodes" {
  project = var.project_id
  role    = "roles/container.defaultNodeServiceAccount"
  member  = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_artifact_registry_repository_iam_member" "nodes_pull" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.nodes.email}"
}

# The BigQuery adapter: appends rows to the messages and events tables (Storage Write API: creating,
# appending to and finalizing write streams of them) and nothing else. No key exists: its Kubernetes
# ServiceAccount acts as this account through Workload Identity.
resource "google_service_account" "adapter" {
  account_id   = "${var.name}-adapter"
  display_name = "MCloudTT BigQuery adapter"
}

resource "google_bigquery_table_iam_member" "adapter_writer" {
  project    = var.project_id
  dataset_id = google_bigquery_table.messages.dataset_id
  table_id   = google_bigquery_table.messages.table_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.adapter.email}"
}

resource "google_bigquery_table_iam_member" "adapter_events_writer" {
  project    = var.project_id
  dataset_id = google_bigquery_table.events.dataset_id
  table_id   = google_bigquery_table.events.table_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.adapter.email}"
}

resource "google_service_account_iam_member" "adapter_workload_identity" {
  service_account_id = google_service_account.adapter.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${local.workload_pool}[${var.k8s_namespace}/${var.adapter_k8s_service_account}]"

  # The pool <project>.svc.id.goog exists only once a cluster with Workload Identity does.
  depends_on = [google_container_cluster.autopilot]
}
