package broker

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/mcpbroker/mcpbroker/broker/config"
)

// ErrNoConfigFile means the broker was built without a configuration file
// to read again.
var ErrNoConfigFile = errors.New("broker: no configuration file to reload (Options.ConfigPath)")

// ReloadFile reads the configuration file again and applies it (Reload).
// A file that does not load or validate — every problem `mcpbroker check`
// reports — is rejected, logged, recorded and counted, and the running
// configuration keeps serving.
func (b *Broker) ReloadFile(ctx context.Context) error {
	if b.configPath == "" {
		return ErrNoConfigFile
	}
	cfg, err := config.Load(b.configPath)
	if err != nil {
		b.reloaded(ctx, "config.rejected", err)
		return err
	}
	return b.Reload(ctx, cfg)
}

// reloadSettle lets an editor finish writing before the file is read.
const reloadSettle = 250 * time.Millisecond

// watchConfig reloads the configuration whenever its file changes
// (reload.watch), until ctx ends. The folder is watched, not the file:
// editors and config management replace files by renaming new ones over
// them.
func (b *Broker) watchConfig(ctx context.Context) error {
	if !b.cfg.Reload.Watch || b.configPath == "" {
		return nil
	}
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := watcher.Add(filepath.Dir(b.configPath)); err != nil {
		watcher.Close()
		return err
	}
	name := filepath.Clean(b.configPath)
	go func() {
		defer watcher.Close()
		var settle <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case event, ok := <-watcher.Events:
				if !ok {
					return
				}
				if filepath.Clean(event.Name) == name && event.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
					settle = time.After(reloadSettle)
				}
			case err, ok := <-watcher.Errors:
				if !ok {
					return
				}
				b.log.Warn("watching the configuration file", "error", err)
			case <-settle:
				settle = nil
				if err := b.ReloadFile(ctx); err != nil && !errors.Is(err, ErrRestartNeeded) {
					b.log.Warn("configuration file changed; reload rejected", "error", err)
				}
			}
		}
	}()
	b.log.Info("watching the configuration file for changes", "file", b.configPath)
	return nil
}
