terraform {
  required_version = ">= 1.8"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Exact pin: provider upgrades change plans, so they are a reviewed commit of their own, and
      # .terraform.lock.hcl (commit it after the first init) pins the checksums.
      version = "7.35.0"
    }
  }

  # State lives in a GCS bucket made once by hand (see the README):
  #   terraform init -backend-config="bucket=<project>-tfstate" -backend-config="prefix=mcloudtt"
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
