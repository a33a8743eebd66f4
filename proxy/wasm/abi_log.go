package wasm

import (
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/weftmesh/weft/proxy/config"
)

type zapLevel = zapcore.Level

// Proxy-Wasm log levels.
const (
	logTrace    = 0
	logDebug    = 1
	logInfo     = 2
	logWarn     = 3
	logError    = 4
	logCritical = 5
)

// guestLogLevel is the lowest Proxy-Wasm level the logger would print: a
// plugin's proxy_get_log_level answers the higher of it and the plugin's
// log_level, so a guest never formats a line that would be dropped.
func guestLogLevel(l *zap.Logger) uint32 {
	switch {
	case l.Core().Enabled(zapcore.DebugLevel):
		return logTrace // zap has no lower level: trace lines print at debug
	case l.Core().Enabled(zapcore.InfoLevel):
		return logInfo
	case l.Core().Enabled(zapcore.WarnLevel):
		return logWarn
	case l.Core().Enabled(zapcore.ErrorLevel):
		return logError
	}
	return logCritical
}

// guestLogLevelNamed is the Proxy-Wasm level of a log_level name ("" is
// info, Envoy's default).
func guestLogLevelNamed(name string) (uint32, bool) {
	if name == "" {
		return logInfo, true
	}
	for i, n := range config.GuestLogLevels {
		if n == name {
			return uint32(i), true
		}
	}
	return 0, false
}

// pluginLogLevel is the level spec's log_level asks for; an unknown name
// (refused by SpecWithModule and config validation) is info.
func pluginLogLevel(spec PluginSpec) uint32 {
	l, _ := guestLogLevelNamed(spec.LogLevel)
	return l
}

func zapLevelOf(level uint32) zapcore.Level {
	switch level {
	case logTrace, logDebug:
		return zapcore.DebugLevel
	case logInfo:
		return zapcore.InfoLevel
	case logWarn:
		return zapcore.WarnLevel
	}
	return zapcore.ErrorLevel
}

func zapLine(line uint32) zap.Field { return zap.Uint32("line", line) }

// logFuncs: proxy_log, proxy_get_log_level, proxy_get_current_time_nanoseconds,
// proxy_set_tick_period_milliseconds.
func logFuncs() []abiFunc {
	return []abiFunc{
		{"proxy_log", host(proxyLog), params(3)},
		{"proxy_get_log_level", host(proxyGetLogLevel), params(1)},
		{"proxy_get_current_time_nanoseconds", host(proxyGetCurrentTime), params(1)},
		{"proxy_set_tick_period_milliseconds", host(proxySetTickPeriod), params(1)},
	}
}

// proxy_log(level, msg_ptr, msg_len)
func proxyLog(v *vm, st []uint64) uint32 {
	level := uint32(st[0])
	if level > logCritical {
		return statusBadArgument
	}
	msg, ok := v.read(uint32(st[1]), uint32(st[2]))
	if !ok {
		return statusInvalidMemoryAccess
	}
	if v.startLog != nil && level >= logWarn && len(v.startLog) < maxStartLog {
		line := string(msg)
		if len(line) > 300 {
			line = line[:300] + "…"
		}
		v.startLog = append(v.startLog, line)
	}
	if level < v.p.logLevel {
		return statusOK // below the plugin's log_level, as Envoy drops it
	}
	if ce := v.p.log.Check(zapLevelOf(level), v.p.guestLogPrefix+string(msg)); ce != nil {
		// The message is Envoy's line, "wasm log NAME ROOT_ID VM_ID: TEXT";
		// the text alone is the guest field (a copy: msg is guest memory,
		// and a core may keep fields after Write returns), with the root
		// context and the VM id beside the plugin field.
		ce.Write(zap.String("guest", string(msg)), zap.Uint32("root_context", v.rootID), zap.String("vm_id", v.p.spec.VMID))
	}
	return statusOK
}

// proxy_get_log_level(ret_level_ptr)
func proxyGetLogLevel(v *vm, st []uint64) uint32 {
	if !v.writeU32(uint32(st[0]), v.p.logLevel) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// proxy_get_current_time_nanoseconds(ret_time_ptr)
func proxyGetCurrentTime(v *vm, st []uint64) uint32 {
	if !v.writeU64(uint32(st[0]), uint64(time.Now().UnixNano())) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// proxy_set_tick_period_milliseconds(ms): only the root context ticks.
func proxySetTickPeriod(v *vm, st []uint64) uint32 {
	ms := uint32(st[0])
	// Each root context ticks on its own (VMs may be shared): the period
	// is the current root's.
	r := v.root(v.p)
	if r == nil {
		return statusBadArgument
	}
	r.tickPeriod.Store(int64(time.Duration(ms) * time.Millisecond))
	r.tickReset.Store(true)
	v.p.wakeTicks()
	return statusOK
}

// envoyLogPrefix is Envoy's "wasm log{ name}{ root_id}{ vm_id}: ".
func envoyLogPrefix(s PluginSpec) string {
	p := "wasm log"
	for _, part := range []string{s.guestName(), s.RootID, s.VMID} {
		if part != "" {
			p += " " + part
		}
	}
	return p + ": "
}
