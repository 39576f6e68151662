package pluginhost

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/rideshare-dbaas/rideshare"

func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command(goTool(), "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// The worker binary compiles in no handler: operations come only from
// plugin binaries (the Nomad Autoscaler's check-sdk, as a test).
func TestWorkerBinaryLinksNoHandler(t *testing.T) {
	for _, dep := range goListDeps(t, module+"/worker/cmd/worker") {
		if strings.HasPrefix(dep, module+"/worker/plugins/") {
			t.Errorf("the worker binary depends on %s", dep)
		}
	}
}

// The plugin contract depends on nothing of the project but itself, so a
// plugin never drags worker internals in.
func TestPluginAPIDependsOnNoProjectPackage(t *testing.T) {
	for _, dep := range goListDeps(t, module+"/worker/pluginapi") {
		if strings.HasPrefix(dep, module+"/") && !strings.HasPrefix(dep, module+"/worker/pluginapi") {
			t.Errorf("worker/pluginapi depends on %s", dep)
		}
	}
}
