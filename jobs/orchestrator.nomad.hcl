# The DBaaS orchestrator: the HTTP front door (db/read, db/write, crash/*,
# worker/list), the election, self-healing and autoscaling. With
# --runtime nomad it runs no worker itself: it sets the count of the
# rideshare-worker job's group "worker" through Nomad's API (scale requests
# with the job modify index as compare-and-set) and watches its
# allocations. Run jobs/worker.nomad.hcl first.

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "driver" {
  type        = string
  default     = "docker"
  description = "Task driver: docker (image rideshare/orchestrator) or raw_exec (bin_dir/orchestrator from `make build`)."
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

variable "nomad_port" {
  type        = number
  default     = 4646
  description = "Port of the Nomad HTTP API on the node the orchestrator runs on."
}

variable "max_slaves" {
  type        = number
  default     = 8
  description = "Most slaves the autoscaler asks for: worker.nomad.hcl's max_count less one (the master)."
}

variable "scale_window" {
  type    = string
  default = "2m"
}

variable "zk_root" {
  type    = string
  default = "/rideshare"
}

variable "queue_prefix" {
  type    = string
  default = ""
}

locals {
  servers = {
    nomad  = <<-EOT
      AMQP_URL={{ range nomadService "rideshare-rabbitmq" }}amqp://{{ .Address }}:{{ .Port }}/{{ break }}{{ end }}
      ZK_SERVERS={{ range $i, $s := nomadService "rideshare-zookeeper" }}{{ if $i }},{{ end }}{{ .Address }}:{{ .Port }}{{ end }}
    EOT
    consul = <<-EOT
      AMQP_URL={{ range service "rideshare-rabbitmq" }}amqp://{{ .Address }}:{{ .Port }}/{{ break }}{{ end }}
      ZK_SERVERS={{ range $i, $s := service "rideshare-zookeeper" }}{{ if $i }},{{ end }}{{ .Address }}:{{ .Port }}{{ end }}
    EOT
  }
  args = [
    "--listen", "${NOMAD_ADDR_http}",
    "--amqp-url", "${AMQP_URL}",
    "--zk-servers", "${ZK_SERVERS}",
    "--zk-root", var.zk_root,
    "--queue-prefix", var.queue_prefix,
    "--runtime", "nomad",
    "--nomad-job", "rideshare-worker",
    "--min-slaves", "1",
    "--max-slaves", format("%d", var.max_slaves),
    "--scale-window", var.scale_window,
  ]
}

job "rideshare-orchestrator" {
  datacenters = var.datacenters
  type        = "service"

  group "orchestrator" {
    # One: it is the only writer of the worker group's count.
    count = 1

    network {
      port "http" {}
    }

    service {
      name     = "rideshare-orchestrator"
      provider = var.provider
      port     = "http"
      check {
        type     = "http"
        path     = "/healthz"
        interval = "5s"
        timeout  = "2s"
      }
    }

    # It keeps no state of its own (ZooKeeper and Nomad have it all): a
    # restart or a new allocation picks up where the last one stopped.
    restart {
      attempts = 5
      interval = "5m"
      delay    = "3s"
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

    task "orchestrator" {
      driver = var.driver

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = "rideshare/orchestrator:${var.image_tag}"
          force_pull   = false
          network_mode = "host"
          args         = local.args
        }
      }
      dynamic "config" {
        for_each = var.driver == "raw_exec" ? [1] : []
        content {
          command = "${var.bin_dir}/orchestrator"
          args    = local.args
        }
      }

      template {
        data        = local.servers[var.provider]
        destination = "local/servers.env"
        env         = true
        change_mode = "restart"
      }

      # The Nomad API of the node it runs on (the api package reads
      # NOMAD_ADDR, and NOMAD_TOKEN when ACLs are on).
      env {
        NOMAD_ADDR = "http://${attr.unique.network.ip-address}:${var.nomad_port}"
      }

      # Sized from what the processes used on a dev agent, idle and under
      # loadgen (docs/nomad.md, "Resources").
      resources {
        cpu    = 200
        memory = 64
      }
    }
  }
}
