# Submits the jobspecs in ../jobs to Nomad, in dependency order, with their
# HCL2 variables. The files are the same ones `nomad job run` and
# `make nomad` use.
#
# The worker group's count belongs to the orchestrator once it runs: a
# re-apply that changes the worker job registers it with worker_count
# again, and the orchestrator (which follows the group's count) scales it
# back within seconds. Prefer `nomad job run -preserve-counts` for worker
# job changes on a live cluster.

provider "nomad" {
  address = var.nomad_addr
}

locals {
  jobs = "${path.module}/../jobs"
  # Nomad takes -var values as strings; lists in HCL syntax.
  datacenters = jsonencode(var.datacenters)
}

resource "nomad_job" "rabbitmq" {
  jobspec = file("${local.jobs}/rabbitmq.nomad.hcl")
  hcl2 {
    vars = {
      datacenters = local.datacenters
      driver      = var.driver
      provider    = var.provider_name
    }
  }
}

resource "nomad_job" "zookeeper" {
  jobspec = file("${local.jobs}/zookeeper.nomad.hcl")
  hcl2 {
    vars = {
      datacenters = local.datacenters
      driver      = var.driver
      provider    = var.provider_name
    }
  }
}

resource "nomad_job" "worker" {
  jobspec    = file("${local.jobs}/worker.nomad.hcl")
  depends_on = [nomad_job.rabbitmq, nomad_job.zookeeper]
  hcl2 {
    vars = {
      datacenters = local.datacenters
      driver      = var.driver
      image_tag   = var.image_tag
      bin_dir     = var.bin_dir
      provider    = var.provider_name
      count       = var.worker_count
      max_count   = var.worker_max
    }
  }
}

resource "nomad_job" "orchestrator" {
  jobspec    = file("${local.jobs}/orchestrator.nomad.hcl")
  depends_on = [nomad_job.worker]
  hcl2 {
    vars = {
      datacenters  = local.datacenters
      driver       = var.driver
      image_tag    = var.image_tag
      bin_dir      = var.bin_dir
      provider     = var.provider_name
      max_slaves   = var.worker_max - 1
      scale_window = var.scale_window
    }
  }
}

resource "nomad_job" "users" {
  jobspec    = file("${local.jobs}/users.nomad.hcl")
  depends_on = [nomad_job.orchestrator]
  hcl2 {
    vars = {
      datacenters = local.datacenters
      driver      = var.driver
      image_tag   = var.image_tag
      bin_dir     = var.bin_dir
      provider    = var.provider_name
      count       = var.users_count
    }
  }
}

resource "nomad_job" "rides" {
  jobspec    = file("${local.jobs}/rides.nomad.hcl")
  depends_on = [nomad_job.orchestrator]
  hcl2 {
    vars = {
      datacenters = local.datacenters
      driver      = var.driver
      image_tag   = var.image_tag
      bin_dir     = var.bin_dir
      provider    = var.provider_name
      count       = var.rides_count
    }
  }
}

resource "nomad_job" "traefik" {
  jobspec = file("${local.jobs}/traefik.nomad.hcl")
  hcl2 {
    vars = {
      datacenters = local.datacenters
      driver      = var.driver
      bin_dir     = var.bin_dir
      provider    = var.provider_name
      http_port   = var.http_port
      api_port    = var.api_port
    }
  }
}
