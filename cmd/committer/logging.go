package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// logConfig holds the logging flags every command shares.
type logConfig struct {
	level  string
	format string
}

func (c *logConfig) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.format, "log-format", "json", "log format: json or text")
}

// logger builds the structured logger the flags describe, writing to w.
func (c *logConfig) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(c.format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", c.format)
}
