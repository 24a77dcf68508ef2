package rego

import "github.com/open-policy-agent/opa/v1/logging"

// nopLogger silences the SDK's own logging; imagegate logs decisions and
// reloads itself with slog.
type nopLogger struct{}

func (nopLogger) Debug(string, ...any)                       {}
func (nopLogger) Info(string, ...any)                        {}
func (nopLogger) Error(string, ...any)                       {}
func (nopLogger) Warn(string, ...any)                        {}
func (l nopLogger) WithFields(map[string]any) logging.Logger { return l }
func (nopLogger) GetLevel() logging.Level                    { return logging.Error }
func (nopLogger) SetLevel(logging.Level)                     {}
