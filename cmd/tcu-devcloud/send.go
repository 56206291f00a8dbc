package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

func send(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:1883", "broker plain TCP address")
	thing := fs.String("thing", "", "target thing name")
	name := fs.String("name", "", "command name, e.g. door.lock")
	params := fs.String("params", "{}", "command parameters as a JSON object")
	timeout := fs.Duration("timeout", 15*time.Second, "how long to wait for the final response")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *thing == "" || *name == "" {
		return errors.New("--thing and --name are required")
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(*params), &p); err != nil {
		return fmt.Errorf("--params: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cfg := uplink.DefaultConfig()
	cfg.Broker, cfg.AllowPlaintext = "tcp://"+*addr, true
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	conn, err := uplink.DialConn(ctx, cfg, tls.Certificate{}, "tcu-devcloud-send-"+fmt.Sprint(time.Now().UnixNano()), log)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	sent := time.Now()
	req := devcloud.NewRequest(*thing, *name, p, sent, cfg.AckTimeout.Std())
	responses := make(chan devcloud.Response, 8)
	if err := conn.Subscribe(ctx, devcloud.ResponseTopic(*thing, req.ID), func(_ string, b []byte) {
		if r, err := devcloud.ParseResponse(b); err == nil {
			select {
			case responses <- r:
			default:
			}
		}
	}); err != nil {
		return err
	}
	payload, _ := json.Marshal(req)
	if err := conn.Publish(ctx, devcloud.RequestTopic(*thing, req.ID), payload); err != nil {
		return err
	}
	return awaitFinal(ctx, stdout, *name, req.ID, sent, *timeout, responses)
}

// awaitFinal prints each response and returns nil on SUCCEEDED, exit
// code 1 on any other final status or when ctx ends first.
func awaitFinal(ctx context.Context, stdout io.Writer, name, id string, sent time.Time, timeout time.Duration, responses <-chan devcloud.Response) error {
	for {
		select {
		case r := <-responses:
			fmt.Fprintf(stdout, "%s %s: %s (%s) in %dms\n", name, id, r.Status, r.ReasonCode, time.Since(sent).Milliseconds())
			if !devcloud.Final(r.Status) {
				continue
			}
			if r.Status == devcloud.StatusSucceeded {
				return nil
			}
			return exitError(1)
		case <-ctx.Done():
			fmt.Fprintf(stdout, "%s %s: no final response within %v\n", name, id, timeout)
			return exitError(1)
		}
	}
}
