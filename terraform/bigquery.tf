resource "google_bigquery_dataset" "mqtt" {
  dataset_id  = var.bigquery_dataset_id
  location    = var.bigquery_location
  description = "MQTT messages exported by the MCloudTT brokers."

  delete_contents_on_destroy = false

  depends_on = [google_project_service.apis]
}

# One row per exported message. Partitioned by the day it was published and clustered by topic, so
# the usual query (one topic tree, a time window) reads only what it needs.
resource "google_bigquery_table" "messages" {
  dataset_id  = google_bigquery_dataset.mqtt.dataset_id
  table_id    = var.bigquery_table_id
  description = "Exported MQTT messages; schema: services/bigquery-adapter/internal/schema/schema.json."
  schema      = local.message_schema

  time_partitioning {
    type          = "DAY"
    field         = "published_at"
    expiration_ms = var.partition_expiration_days > 0 ? var.partition_expiration_days * 86400000 : null
  }

  clustering = ["topic"]

  deletion_protection = var.deletion_protection
}
