# The DBaaS workers. Every allocation of group "worker" is one worker
# (master or slave, as the orchestrator's election decides): its id is
# "w-" and the allocation's short id, its database lives in the allocation
# directory. The orchestrator (--runtime nomad) sets this group's count
# through Nomad's scale API; `nomad job status rideshare-worker` shows it.
#
#   nomad job run jobs/worker.nomad.hcl                      # docker, rideshare/worker:dev
#   nomad job run -var driver=raw_exec -var bin_dir=$PWD/bin jobs/worker.nomad.hcl
#
# Re-running this file keeps the scaled count only with
# `nomad job run -preserve-counts` (Terraform: see terraform-nomad/).

variable "datacenters" {
  type        = list(string)
  default     = ["dc1"]
  description = "Datacenters the workers may run in."
}

variable "driver" {
  type        = string
  default     = "docker"
  description = "Task driver: docker (image rideshare/worker) or raw_exec (bin_dir/worker from `make build`)."
  validation {
    condition     = contains(["docker", "raw_exec"], var.driver)
    error_message = "The driver must be docker or raw_exec."
  }
}

variable "image_tag" {
  type        = string
  default     = "dev"
  description = "Tag of the rideshare/worker image (docker driver)."
}

variable "bin_dir" {
  type        = string
  default     = "/opt/rideshare/bin"
  description = "Absolute path of the directory `make build` filled: worker and plugins/ (raw_exec driver)."
}

variable "provider" {
  type        = string
  default     = "nomad"
  description = "Service discovery: nomad (native) or consul. Every job of the stack must use the same."
  validation {
    condition     = contains(["nomad", "consul"], var.provider)
    error_message = "The provider must be nomad or consul."
  }
}

variable "count" {
  type        = number
  default     = 2
  description = "Workers at the first run: one master and one slave (the orchestrator scales from there)."
}

variable "max_count" {
  type        = number
  default     = 9
  description = "Most workers: the scaling block's max (the orchestrator's --max-slaves is one less)."
}

variable "zk_root" {
  type        = string
  default     = "/rideshare"
  description = "ZooKeeper root of this DBaaS (the orchestrator's --zk-root)."
}

variable "queue_prefix" {
  type        = string
  default     = ""
  description = "Prefix of the DBaaS's RabbitMQ queues (the orchestrator's --queue-prefix)."
}

variable "log_level" {
  type    = string
  default = "info"
}

locals {
  # RabbitMQ and ZooKeeper, looked up in the catalog (never a fixed address):
  # rendered into the task's environment; a change restarts the task. The
  # broker URL carries the stack's RabbitMQ user and password, from the
  # Nomad variable nomad/jobs/<job> (scripts/nomad.sh writes it): never a
  # literal, never on a command line; the file is under secrets/.
  servers = {
    nomad  = <<-EOT
      RIDESHARE_AMQP_URL={{ with nomadVar "nomad/jobs/rideshare-worker" }}amqp://{{ .amqp_user }}:{{ .amqp_password }}@{{ end }}{{ range nomadService "rideshare-rabbitmq" }}{{ .Address }}:{{ .Port }}{{ break }}{{ end }}/{{ with nomadVar "nomad/jobs/rideshare-worker" }}{{ .amqp_vhost }}{{ end }}
      ZK_SERVERS={{ range $i, $s := nomadService "rideshare-zookeeper" }}{{ if $i }},{{ end }}{{ .Address }}:{{ .Port }}{{ end }}
    EOT
    consul = <<-EOT
      RIDESHARE_AMQP_URL={{ with nomadVar "nomad/jobs/rideshare-worker" }}amqp://{{ .amqp_user }}:{{ .amqp_password }}@{{ end }}{{ range service "rideshare-rabbitmq" }}{{ .Address }}:{{ .Port }}{{ break }}{{ end }}/{{ with nomadVar "nomad/jobs/rideshare-worker" }}{{ .amqp_vhost }}{{ end }}
      ZK_SERVERS={{ range $i, $s := service "rideshare-zookeeper" }}{{ if $i }},{{ end }}{{ .Address }}:{{ .Port }}{{ end }}
    EOT
  }
  args = [
    "--id", "w-${NOMAD_SHORT_ALLOC_ID}",
    "--data-dir", "${NOMAD_ALLOC_DIR}/data",
    "--zk-servers", "${ZK_SERVERS}",
    "--zk-root", var.zk_root,
    "--zk-timeout", "2s",
    "--queue-prefix", var.queue_prefix,
    "--log-level", var.log_level,
    # Prometheus /metrics on the port Nomad gives this allocation, at the
    # node's address: published in ZooKeeper, so the orchestrator's
    # /api/v1/prometheus/targets lists it.
    "--metrics-listen", "${NOMAD_ADDR_metrics}",
  ]
}

job "rideshare-worker" {
  datacenters = var.datacenters
  type        = "service"

  group "worker" {
    count = var.count

    # Nomad enforces min and max on every scale request; there is always a
    # master and at least one slave to take over from it.
    scaling {
      enabled = true
      min     = 2
      max     = var.max_count
    }

    # A crashed worker is restarted in place: same allocation, same id, same
    # database in the allocation directory; it catches up from the master's
    # log. The delay outlasts the ZooKeeper session (2 s), so the old
    # registration is gone before the new process registers.
    restart {
      attempts = 3
      interval = "5m"
      delay    = "3s"
      mode     = "fail"
    }

    # A worker that keeps failing is replaced by a new allocation (a new
    # worker, new id): it starts from a snapshot of the master, so its old
    # disk is not needed (no sticky ephemeral disk).
    reschedule {
      delay          = "10s"
      delay_function = "exponential"
      max_delay      = "2m"
      unlimited      = true
    }

    # Workers serve no API port (only /metrics): healthy means the task runs. One at a time, so
    # an update never takes the master and its likely successor together.
    update {
      max_parallel     = 1
      health_check     = "task_states"
      min_healthy_time = "5s"
      healthy_deadline = "2m"
    }

    # The worker's /metrics (--metrics-listen): a dynamic host port. Both
    # drivers run on the host network, so the worker listens on it as it is.
    network {
      port "metrics" {}
    }

    ephemeral_disk {
      size = 500
    }

    task "worker" {
      driver = var.driver

      # docker: the host's pid namespace (pid_mode), so the pid the worker
      # registers, and worker/list shows, is its host pid as under raw_exec
      # (else every worker is pid 1); host networking, to reach the servers
      # at the addresses they registered.
      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = "rideshare/worker:${var.image_tag}"
          force_pull   = false
          network_mode = "host"
          pid_mode     = "host"
          args         = concat(local.args, ["--plugin-dir", "/plugins"])
        }
      }
      dynamic "config" {
        for_each = var.driver == "raw_exec" ? [1] : []
        content {
          command = "${var.bin_dir}/worker"
          args    = concat(local.args, ["--plugin-dir", "${var.bin_dir}/plugins"])
        }
      }

      template {
        data        = local.servers[var.provider]
        destination = "secrets/servers.env"
        env         = true
        change_mode = "restart"
      }

      # SIGTERM: the worker stops consuming, finishes or requeues what it
      # holds and kills its plugins; then SIGKILL.
      kill_signal  = "SIGTERM"
      kill_timeout = "15s"

      # Sized from what the processes used on a dev agent, idle and under
      # loadgen (docs/nomad.md, "Resources").
      resources {
        cpu    = 200
        memory = 192
      }
    }
  }
}
