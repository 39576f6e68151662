// Package httpx is the HTTP plumbing of our servers. The orchestrator uses
// its JSON replies and strict decoding; the users and rides services share
// all of it: JSON replies and errors, strict request decoding with a body cap, a router
// that answers 404 and 405 (with Allow) in JSON, the per-instance request
// counter behind /api/v1/_count, the db/clear and health routes, the common
// configuration and flags, and a server that shuts down gracefully.
package httpx
