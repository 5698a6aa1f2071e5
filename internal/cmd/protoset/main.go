// Command protoset writes the descriptors of the Envoy ext_authz service
// (envoy.service.auth.v3, with every file it imports) as a
// FileDescriptorSet, from the same generated code the server is built
// with. Load tools such as ghz read it instead of server reflection, which
// the gateway does not register.
//
//	go run ./internal/cmd/protoset > authz.protoset
package main

import (
	"fmt"
	"os"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

func main() {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	// Dependencies first, as protoc writes them with --include_imports.
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imports := f.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(authv3.File_envoy_service_auth_v3_external_auth_proto)
	b, err := proto.Marshal(set)
	if err == nil {
		_, err = os.Stdout.Write(b)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "protoset:", err)
		os.Exit(1)
	}
}
