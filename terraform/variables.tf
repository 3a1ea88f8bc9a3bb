variable "project_id" {
  description = "Google Cloud project that holds everything (it must exist, with billing enabled)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6-30 lower-case letters, digits or hyphens."
  }
}

variable "region" {
  description = "Region of the cluster, the subnet, Memorystore and the Artifact Registry repository."
  type        = string
  default     = "europe-west1"
}

variable "name" {
  description = "Prefix of every resource name (network, cluster, repository, service accounts)."
  type        = string
  default     = "mcloudtt"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.name))
    error_message = "name must be 2-15 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "subnet_cidr" {
  description = "Primary range of the cluster's subnet (nodes)."
  type        = string
  default     = "10.10.0.0/20"
}

variable "pods_cidr" {
  description = "Secondary range of the subnet for pod addresses."
  type        = string
  default     = "10.20.0.0/14"
}

variable "services_cidr" {
  description = "Secondary range of the subnet for Service cluster IPs."
  type        = string
  default     = "10.24.0.0/20"
}

variable "release_channel" {
  description = "GKE release channel of the Autopilot cluster: RAPID, REGULAR or STABLE."
  type        = string
  default     = "REGULAR"

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "release_channel must be RAPID, REGULAR or STABLE."
  }
}

variable "master_authorized_networks" {
  description = "CIDR ranges allowed to reach the cluster's control plane, as {cidr_block, display_name}. Empty: any address (authenticated by Google IAM)."
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  default = []
}

variable "redis_tier" {
  description = "Memorystore tier: STANDARD_HA (primary and replica in two zones, automatic failover; for production) or BASIC (one node: a restart or failure reloads the last RDB snapshot)."
  type        = string
  default     = "STANDARD_HA"

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.redis_tier)
    error_message = "redis_tier must be BASIC or STANDARD_HA."
  }
}

variable "redis_rdb_snapshot_period" {
  description = "How often Memorystore writes an RDB snapshot: the most a failure of the whole instance loses. ONE_HOUR, SIX_HOURS, TWELVE_HOURS or TWENTY_FOUR_HOURS."
  type        = string
  default     = "ONE_HOUR"

  validation {
    condition     = contains(["ONE_HOUR", "SIX_HOURS", "TWELVE_HOURS", "TWENTY_FOUR_HOURS"], var.redis_rdb_snapshot_period)
    error_message = "redis_rdb_snapshot_period must be ONE_HOUR, SIX_HOURS, TWELVE_HOURS or TWENTY_FOUR_HOURS."
  }
}

variable "redis_memory_size_gb" {
  description = "Memorystore capacity in GiB: retained messages, offline sessions and the export stream backlog."
  type        = number
  default     = 2
}

variable "redis_version" {
  description = "Memorystore Redis version."
  type        = string
  default     = "REDIS_7_2"
}

variable "redis_reserved_ip_range" {
  description = "The /29 range Memorystore takes its address from; the gke overlay's NetworkPolicy allows exactly this range."
  type        = string
  default     = "10.30.0.0/29"
}

variable "bigquery_location" {
  description = "Location of the BigQuery dataset (multi-region EU or US, or a region)."
  type        = string
  default     = "EU"
}

variable "bigquery_dataset_id" {
  description = "Dataset that holds the exported MQTT messages and device presence."
  type        = string
  default     = "mqtt"
}

variable "bigquery_table_id" {
  description = "Table of exported messages; its schema is services/bigquery-adapter/internal/schema/schema.json."
  type        = string
  default     = "messages"
}

variable "bigquery_events_table_id" {
  description = "Table of device presence (connects and disconnects); its schema is services/bigquery-adapter/internal/schema/events.json."
  type        = string
  default     = "events"
}

variable "partition_expiration_days" {
  description = "Days a daily partition of the messages and events tables is kept; 0 keeps them forever."
  type        = number
  default     = 0
}

variable "k8s_namespace" {
  description = "Kubernetes namespace the services run in (deploy/base sets mcloudtt)."
  type        = string
  default     = "mcloudtt"
}

variable "adapter_k8s_service_account" {
  description = "Kubernetes ServiceAccount of the BigQuery adapter, bound to its Google service account by Workload Identity."
  type        = string
  default     = "bigquery-adapter"
}

variable "deletion_protection" {
  description = "Refuse to destroy the cluster and the messages table. Set false only to tear a test environment down."
  type        = bool
  default     = true
}
