# The rides service behind Traefik; it checks that a user exists through
# Traefik (LB_URL). Its tags are the rides row of traefik/routes.tsv
# (`bin/traefik-render -nomad-tags rides` prints them; a test keeps this
# file equal to it), with Traefik's own health check: Traefik does not
# read Nomad's checks.

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "driver" {
  type        = string
  default     = "docker"
  description = "Task driver: docker (image rideshare/rides) or raw_exec (bin_dir/rides from `make build`)."
  validation {
    condition     = contains(["docker", "raw_exec"], var.driver)
    error_message = "The driver must be docker or raw_exec."
  }
}

variable "image_tag" {
  type    = string
  default = "dev"
}

variable "bin_dir" {
  type        = string
  default     = "/opt/rideshare/bin"
  description = "Absolute path of the directory `make build` filled (raw_exec driver)."
}

variable "provider" {
  type        = string
  default     = "nomad"
  description = "Service discovery: nomad (native) or consul."
  validation {
    condition     = contains(["nomad", "consul"], var.provider)
    error_message = "The provider must be nomad or consul."
  }
}

variable "count" {
  type    = number
  default = 2
}

locals {
  discovery = {
    nomad  = <<-EOT
      DBAAS_URL={{ range nomadService "rideshare-orchestrator" }}http://{{ .Address }}:{{ .Port }}{{ break }}{{ end }}
      LB_URL={{ range nomadService "traefik" }}http://{{ .Address }}:{{ .Port }}{{ break }}{{ end }}
    EOT
    consul = <<-EOT
      DBAAS_URL={{ range service "rideshare-orchestrator" }}http://{{ .Address }}:{{ .Port }}{{ break }}{{ end }}
      LB_URL={{ range service "traefik" }}http://{{ .Address }}:{{ .Port }}{{ break }}{{ end }}
    EOT
  }
  args = [
    "--listen", "${NOMAD_ADDR_http}",
    "--dbaas-url", "${DBAAS_URL}",
    "--users-url", "${LB_URL}",
    "--public-url", "http://${NOMAD_ADDR_http}",
  ]
}

job "rideshare-rides" {
  datacenters = var.datacenters
  type        = "service"

  group "rides" {
    count = var.count

    network {
      port "http" {}
    }

    service {
      name     = "rides"
      provider = var.provider
      port     = "http"
      tags = [
        "traefik.enable=true",
        "traefik.http.routers.rides.rule=PathPrefix(`/`)",
        "traefik.http.routers.rides.priority=1",
        "traefik.http.routers.rides.entrypoints=web",
        "traefik.http.routers.rides.service=rides",
        "traefik.http.services.rides.loadbalancer.passhostheader=true",
        "traefik.http.services.rides.loadbalancer.healthcheck.path=/healthz",
        "traefik.http.services.rides.loadbalancer.healthcheck.interval=2s",
        "traefik.http.services.rides.loadbalancer.healthcheck.timeout=1s",
      ]
      check {
        type     = "http"
        path     = "/healthz"
        interval = "5s"
        timeout  = "2s"
      }
    }

    # Stateless: restart in place, else anywhere.
    restart {
      attempts = 5
      interval = "5m"
      delay    = "2s"
      mode     = "delay"
    }

    reschedule {
      delay          = "5s"
      delay_function = "exponential"
      max_delay      = "1m"
      unlimited      = true
    }

    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "5s"
      healthy_deadline = "2m"
      auto_revert      = true
    }

    task "rides" {
      driver = var.driver

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = "rideshare/rides:${var.image_tag}"
          force_pull   = false
          network_mode = "host"
          args         = local.args
        }
      }
      dynamic "config" {
        for_each = var.driver == "raw_exec" ? [1] : []
        content {
          command = "${var.bin_dir}/rides"
          args    = local.args
        }
      }

      template {
        data        = local.discovery[var.provider]
        destination = "local/discovery.env"
        env         = true
        change_mode = "restart"
      }

      # Sized from what the processes used on a dev agent, idle and under
      # loadgen (docs/nomad.md, "Resources").
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
