package main

import (
	"strings"
	"testing"
)

// Bad autopilot flag values stop `serve` before anything starts, with an
// error that names the flag; their COMMITTER_* variables are checked the
// same way.
func TestAutopilotFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"negative last contact threshold", nil, []string{"--autopilot-last-contact-threshold", "-1s"},
			"--autopilot-last-contact-threshold must not be negative, got -1s"},
		{"negative stabilization time", nil, []string{"--autopilot-server-stabilization-time", "-5s"},
			"--autopilot-server-stabilization-time must not be negative, got -5s"},
		{"negative min quorum", nil, []string{"--autopilot-min-quorum", "-1"},
			"--autopilot-min-quorum must not be negative, got -1"},
		{"dead threshold too short", nil, []string{"--autopilot-dead-server-threshold", "500ms"},
			"--autopilot-dead-server-threshold must be at least 2s"},
		{"dead before unhealthy", nil, []string{"--autopilot-dead-server-threshold", "3s", "--autopilot-last-contact-threshold", "4s"},
			"--autopilot-dead-server-threshold (3s) must exceed --autopilot-last-contact-threshold (4s)"},
		{"trailing logs is a count", nil, []string{"--autopilot-max-trailing-logs", "-3"},
			`invalid argument "-3" for "--autopilot-max-trailing-logs"`},
		{"environment", map[string]string{"COMMITTER_AUTOPILOT_MIN_QUORUM": "-2"}, nil,
			"--autopilot-min-quorum must not be negative, got -2"},
		{"environment cleanup switch", map[string]string{"COMMITTER_AUTOPILOT_CLEANUP_DEAD_SERVERS": "sometimes"}, nil,
			`invalid environment: COMMITTER_AUTOPILOT_CLEANUP_DEAD_SERVERS: invalid argument "sometimes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, stderr := runInProcess(t, append([]string{"serve", "--backend", "bolt:///nonexistent/x.db"}, tc.args...)...)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, tc.want)
			}
			if strings.Contains(stderr, "opening backend") {
				t.Errorf("serve got as far as opening the backend: %q", stderr)
			}
		})
	}
}
