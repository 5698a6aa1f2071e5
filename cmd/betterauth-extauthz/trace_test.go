package main

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/zap"
)

// Traces are exported only when the standard environment asks for them.
func TestTracingFollowsTheEnvironment(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_SERVICE_NAME": "gw"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_SDK_DISABLED": "true"}, false},
	} {
		t.Run(fmt.Sprint(tc.env), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v) // autoexport reads the process environment
			}
			opt, stop, err := tracing(context.Background(), func(k string) string { return tc.env[k] }, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			stop()
			if (opt != nil) != tc.want {
				t.Errorf("tracing %v, want %v", opt != nil, tc.want)
			}
		})
	}
}
