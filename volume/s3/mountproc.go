package s3

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dockplug/dockplug/volume/s3fs"
)

// MountSpec is what the driver hands a mount process (procs/NAME.json,
// mode 0600). It names the config file and profile rather than carrying
// credentials: the process reads them itself.
type MountSpec struct {
	ConfigFile string `json:"configFile"`
	Profile    string `json:"profile"`
	Bucket     string `json:"bucket"`
	Prefix     string `json:"prefix"`
	Volume     string `json:"volume"`
	Mountpoint string `json:"mountpoint"`
	CacheDir   string `json:"cacheDir"`
	UID        uint32 `json:"uid"`
	GID        uint32 `json:"gid"`
	Mode       uint32 `json:"mode"`
	CacheTTL   string `json:"cacheTTL"`
	AsyncClose bool   `json:"asyncClose"`
	StagedMax  int64  `json:"stagedMax,omitempty"`
	// ExitFile receives "ok" when every upload finished at unmount, or
	// the error.
	ExitFile string `json:"exitFile"`
}

// ServeMount is the mount process (`dockplug s3-mount --spec FILE`): it
// uploads what a killed predecessor left staged, mounts the volume, serves
// it until it is unmounted, then waits for every upload and exits. SIGTERM
// and SIGINT unmount (if nothing holds the mount busy).
func ServeMount(ctx context.Context, specFile string, log *slog.Logger) (err error) {
	b, err := os.ReadFile(specFile)
	if err != nil {
		return fmt.Errorf("mount spec: %w", err)
	}
	var spec MountSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("mount spec %s: %w", specFile, err)
	}
	defer func() {
		if spec.ExitFile == "" {
			return
		}
		msg := "ok"
		if err != nil {
			msg = err.Error()
		}
		if werr := os.WriteFile(spec.ExitFile, []byte(msg+"\n"), 0o600); werr != nil {
			log.Error("write exit file", "err", werr)
		}
	}()
	cfg, err := LoadConfig(spec.ConfigFile)
	if err != nil {
		return err
	}
	prof, err := cfg.Profile(spec.Profile)
	if err != nil {
		return err
	}
	cli, err := prof.Client()
	if err != nil {
		return err
	}
	ttl, err := time.ParseDuration(spec.CacheTTL)
	if err != nil {
		return fmt.Errorf("mount spec: cacheTTL: %w", err)
	}
	fsys, err := s3fs.New(s3fs.Options{
		Client: cli, Bucket: spec.Bucket, Prefix: spec.Prefix,
		UID: spec.UID, GID: spec.GID, Mode: os.FileMode(spec.Mode),
		CacheTTL: ttl, AsyncClose: spec.AsyncClose, MaxStaged: spec.StagedMax, CacheDir: spec.CacheDir, Logger: log,
	})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	n, err := fsys.Recover(rctx)
	cancel()
	if err != nil {
		return fmt.Errorf("upload data left staged by a previous mount process: %w", err)
	}
	if n > 0 {
		log.Warn("recovered staged files", "count", n)
	}
	srv, err := fsys.Mount(spec.Mountpoint, "dockplug-s3:"+spec.Bucket+"/"+spec.Prefix)
	if err != nil {
		return err
	}
	log.Info("serving", "volume", spec.Volume, "mountpoint", spec.Mountpoint, "pid", os.Getpid())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for range sigs {
			if err := srv.Unmount(); err != nil {
				log.Error("unmount on signal", "err", err)
			}
		}
	}()
	srv.Wait()
	signal.Stop(sigs)
	log.Info("unmounted; waiting for uploads", "volume", spec.Volume)
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := fsys.Close(cctx); err != nil {
		return fmt.Errorf("uploads at unmount: %w", err)
	}
	return nil
}
