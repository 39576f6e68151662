// Package docs holds no code: its tests keep the documentation true to the
// code. The OpenAPI documents (openapi/*.yaml) are checked against the real
// routers (every route documented, every documented route served) and
// against the statuses the whole test suite produced (make apicheck: a
// status no test can reach through HTTP is marked x-untested with the
// reason, and is the exception); every repository path a Markdown file
// names in backticks must exist.
package docs
