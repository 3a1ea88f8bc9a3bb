resource "google_bigquery_dataset" "mqtt" {
  dataset_id  = var.bigquery_dataset_id
  location    = var.bigquery_location
  description = "MQTT messages exported by the MCloudTT brokers."

  delete_contents_on_destroy = false

  depends_on = [google_project_service.apis]
}

# One row per exported message. Partitioned by the day it was published and clustered by topic and
# client id, so the usual queries (one topic tree or one device, a time window) read only what they
# need.
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

  clustering = ["topic", "client_id"]

  deletion_protection = var.deletion_protection
}

# Device presence: one row per CONNECT and per disconnect (with its cause), written by the adapter
# from the same export stream. Partitioned by the day it happened, clustered by client id.
resource "google_bigquery_table" "events" {
  dataset_id  = google_bigquery_dataset.mqtt.dataset_id
  table_id    = var.bigquery_events_table_id
  description = "MQTT device presence: every CONNECT and disconnect with its cause; schema: services/bigquery-adapter/internal/schema/events.json."
  schema      = local.events_schema

  time_partitioning {
    type          = "DAY"
    field         = "occurred_at"
    expiration_ms = var.partition_expiration_days > 0 ? var.partition_expiration_days * 86400000 : null
  }

  clustering = ["client_id"]

  deletion_protection = var.deletion_protection
}
