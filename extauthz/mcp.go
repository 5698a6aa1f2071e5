package extauthz

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/caddy-betterauth/caddy-betterauth/mcp"
)

// MCPNamespace is where Envoy's MCP filter (envoy.filters.http.mcp) puts
// what it read of a JSON-RPC POST: "method", "id", "params" ("name",
// "uri", "ref"...), "is_mcp_request", and "is_exceeding_limit" when the
// body was larger than its max_request_body_size. ext_authz sends it to
// the gateway when configured with metadata_context_namespaces naming it.
const MCPNamespace = "envoy.filters.http.mcp"

// partialBody is the header Envoy adds when it sent only the first
// max_request_bytes of the body (with_request_body with
// allow_partial_message).
const partialBody = "x-envoy-auth-partial-body"

// checkRequest is what a Check call says of its request beside the
// headers: the method, the MCP filter's metadata, and the body when Envoy
// sent all of it.
func checkRequest(req *authv3.CheckRequest) mcp.Request {
	h := req.GetAttributes().GetRequest().GetHttp()
	r := mcp.Request{Method: h.GetMethod(), Metadata: filterMetadata(req.GetAttributes().GetMetadataContext())}
	partial := strings.EqualFold(h.GetHeaders()[partialBody], "true")
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		partial = partial || strings.EqualFold(hv.GetKey(), partialBody) && (hv.GetValue() == "true" || string(hv.GetRawValue()) == "true")
	}
	switch {
	case partial:
	case len(h.GetRawBody()) > 0:
		r.Bytes = h.GetRawBody()
	case h.GetBody() != "":
		r.Bytes = []byte(h.GetBody())
	}
	return r
}

// forwardRequest is what a forward-auth request says of the original: its
// method (a caller that checks every request with GET names the original
// in X-Forwarded-Method; either saying POST makes it one), and its body
// when the caller passes it whole (Envoy's http_service with
// with_request_body).
func forwardRequest(r *http.Request) mcp.Request {
	req := mcp.Request{Method: r.Method}
	if strings.EqualFold(r.Header.Get("X-Forwarded-Method"), http.MethodPost) {
		req.Method = http.MethodPost
	}
	if r.Method == http.MethodPost && r.ContentLength != 0 && !strings.EqualFold(r.Header.Get(partialBody), "true") {
		req.Body, req.ContentLength = r.Body, r.ContentLength
	}
	return req
}

// filterMetadata reads the MCP filter's metadata, when there is some.
func filterMetadata(mc *corev3.Metadata) *mcp.Metadata {
	st := mc.GetFilterMetadata()[MCPNamespace]
	if st == nil {
		return nil
	}
	f := st.GetFields()
	md := &mcp.Metadata{Method: f["method"].GetStringValue(), ID: jsonID(f["id"])}
	if v, ok := f["is_mcp_request"]; ok && !v.GetBoolValue() {
		md.NotMCP = true
	}
	md.Truncated = f["is_exceeding_limit"].GetBoolValue()
	params := f["params"].GetStructValue().GetFields()
	md.Name, md.HasName = text(params["name"])
	md.URI, md.HasURI = text(params["uri"])
	ref := params["ref"].GetStructValue().GetFields()
	md.RefType, md.HasRefType = text(ref["type"])
	md.RefName, md.HasRefName = text(ref["name"])
	md.RefURI, md.HasRefURI = text(ref["uri"])
	return md
}

// text is a metadata value that is a string.
func text(v *structpb.Value) (string, bool) {
	s, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		return "", false
	}
	return s.StringValue, true
}

// jsonID writes an id back as JSON, for the error that answers it.
func jsonID(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		b, _ := json.Marshal(k.StringValue)
		return string(b)
	case *structpb.Value_NumberValue:
		return strconv.FormatFloat(k.NumberValue, 'f', -1, 64)
	case *structpb.Value_NullValue:
		return "null"
	}
	return ""
}
