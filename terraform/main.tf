# MCloudTT on Google Cloud: a private VPC with Cloud NAT, a GKE Autopilot cluster, an Artifact
# Registry repository for the images, Memorystore for Redis, the BigQuery tables the adapter writes,
# and service accounts with only the roles they use. Terraform provisions infrastructure only; the
# application is deployed with skaffold (deploy/overlays/gke).

locals {
  # The adapter embeds the same files (go:embed), so the tables and the rows it writes cannot drift.
  # jsonencode(jsondecode()) drops formatting so only a real change shows in a plan.
  message_schema = jsonencode(jsondecode(file("${path.module}/../services/bigquery-adapter/internal/schema/schema.json")))
  events_schema  = jsonencode(jsondecode(file("${path.module}/../services/bigquery-adapter/internal/schema/events.json")))

  workload_pool = "${var.project_id}.svc.id.goog"
}

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "bigquerystorage.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "iam.googleapis.com",
    "redis.googleapis.com",
  ])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
