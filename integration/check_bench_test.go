package integration

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/caddy-betterauth/caddy-betterauth/demo"
	"github.com/caddy-betterauth/caddy-betterauth/extauthz"
	"github.com/caddy-betterauth/caddy-betterauth/gateway"
)

// BenchmarkCheck calls the ext_authz service over a real gRPC connection on
// loopback with a cached API key, as Envoy would: "latency" times single
// calls and reports p50/p99; "throughput" keeps both cores busy.
//
//	go test -run '^$' -bench Check -benchtime 5000x ./integration/
func BenchmarkCheck(b *testing.B) {
	path := filepath.Join(b.TempDir(), "auth.db")
	creds, err := demo.Create(context.Background(), path, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	opts := gateway.Options{Database: "sqlite://" + path}
	gw, err := gateway.Open(opts, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer gw.Close()
	gate, err := gw.Gate(opts, nil)
	if err != nil {
		b.Fatal(err)
	}
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, extauthz.New(gate))
	go gs.Serve(lis)
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/mcp", Headers: map[string]string{
			"x-api-key": creds.APIKey, "accept": "application/json, text/event-stream", "content-type": "application/json",
			":authority": "mcp.example.com", "user-agent": "bench",
		}},
	}}}
	ctx := context.Background()
	call := func(b *testing.B) {
		resp, err := client.Check(ctx, req)
		if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			b.Fatal(resp, err)
		}
	}
	call(b)
	b.Run("latency", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			call(b)
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	})
	b.Run("throughput", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				call(b)
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
	})
}
