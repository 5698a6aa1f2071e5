package main

import (
	"context"
	"time"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/extauthz"
)

// tracing returns the ext_authz server's tracing option and what flushes
// it at exit, when the standard OpenTelemetry environment asks for traces:
// an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or an explicit OTEL_TRACES_EXPORTER,
// not "none", and OTEL_SDK_DISABLED not "true". The exporter, its protocol,
// the sampler and the propagators then follow the same variables as in
// Caddy's tracing handler. Otherwise nothing is traced, at no cost.
func tracing(ctx context.Context, getenv func(string) string, logger *zap.Logger) (extauthz.Option, func(), error) {
	exporter := getenv("OTEL_TRACES_EXPORTER")
	if getenv("OTEL_SDK_DISABLED") == "true" || exporter == "none" ||
		exporter == "" && getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nil, func() {}, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, nil, err
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the name.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "betterauth-extauthz")),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	logger.Info("tracing decisions (OpenTelemetry)")
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			logger.Warn("flushing traces", zap.Error(err))
		}
	}
	return extauthz.WithTracing(tp, autoprop.NewTextMapPropagator()), stop, nil
}
