package orchestrator

import "testing"

// The x-request-ids header lists a batch's ids in order, keeps the places
// of requests without one, and is left out when no request has one.
func TestJoinRIDs(t *testing.T) {
	tests := []struct {
		name string
		ids  []string
		want string
	}{
		{"none", []string{"", ""}, ""},
		{"one", []string{"t-1"}, "t-1"},
		{"in order with gaps", []string{"t-1", "", "t-3"}, "t-1,,t-3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := joinRIDs(len(tt.ids), func(i int) string { return tt.ids[i] }); got != tt.want {
				t.Fatalf("joinRIDs(%q) = %q, want %q", tt.ids, got, tt.want)
			}
		})
	}
}
