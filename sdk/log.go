package sdk

import (
	"fmt"

	"github.com/weftmesh/weft/sdk/internal/abi"
)

// LogLevel is a Proxy-Wasm log level.
type LogLevel uint32

// Log levels.
const (
	LogTrace LogLevel = iota
	LogDebug
	LogInfo
	LogWarn
	LogError
	LogCritical
)

// LogEnabled reports whether the host would print messages at level for
// some plugin of the VM (read when the VM starts and when each plugin is
// configured), so hot paths can skip formatting.
func LogEnabled(level LogLevel) bool { return level >= vm.logLevel }

// Log sends msg to the host's log at level.
func Log(level LogLevel, msg string) {
	if level >= vm.logLevel {
		abi.Log(uint32(level), msg)
	}
}

func logf(level LogLevel, format string, args []any) {
	if level >= vm.logLevel {
		abi.Log(uint32(level), fmt.Sprintf(format, args...))
	}
}

// Debugf logs at debug level.
func Debugf(format string, args ...any) { logf(LogDebug, format, args) }

// Infof logs at info level.
func Infof(format string, args ...any) { logf(LogInfo, format, args) }

// Warnf logs at warn level.
func Warnf(format string, args ...any) { logf(LogWarn, format, args) }

// Errorf logs at error level.
func Errorf(format string, args ...any) { logf(LogError, format, args) }

// Criticalf logs at critical level.
func Criticalf(format string, args ...any) { logf(LogCritical, format, args) }
