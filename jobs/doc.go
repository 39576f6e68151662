// Package jobs holds RideShare's Nomad jobspecs (*.nomad.hcl, one per part
// of the stack) and, in its tests, the checks they and the Terraform in
// ../terraform-nomad must pass: parsed with hcl/v2, formatted as
// hclwrite.Format leaves them, the structure the deployment relies on, the
// Traefik tags equal to package traefik's, and no hard-coded address.
// docs/nomad.md says how to run them.
package jobs
