package main

import (
	"context"
	"strings"
	"testing"
)

// dockplug-s3 needs an outside service: never served without being named.
func TestS3PluginIsExternal(t *testing.T) {
	def, err := selectPlugins([]string{"dockplug-s3"})
	if err != nil || len(def) != 1 || !def[0].def.External {
		t.Fatalf("dockplug-s3: %+v, %v", def, err)
	}
	all, err := selectPlugins(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.name == "dockplug-s3" {
			t.Fatal("dockplug-s3 is in the default set")
		}
	}
	_, err = def[0].def.Open(context.Background(), &serveEnv{StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "--s3-config") {
		t.Fatalf("Open without --s3-config: %v", err)
	}
}
