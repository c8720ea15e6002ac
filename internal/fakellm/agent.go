package fakellm

import (
	"encoding/json"
	"fmt"
	"strings"
)

// DefaultAgentMarker and DefaultAgentFile are what an Agent script uses
// when its Marker and File are empty.
const (
	DefaultAgentMarker = "fakellm-agent-ok"
	DefaultAgentFile   = "fakellm-agent.txt"
)

// Agent scripts a coding agent's turn, so that a test can drive a real
// agent (Claude Code, the Codex CLI, ...) through one tool call without a
// model. On a request that declares a shell tool the fake knows (Claude
// Code's Bash, the Codex CLI's exec_command, shell or shell_command, Gemini
// CLI's run_shell_command) and whose conversation carries no tool result
// yet, the answer is a call of that tool with a command that writes
// Output() into File and prints it. Once a tool result is in the
// conversation, the answer is final text: "The command printed
// <Output()>." when some tool result holds Output(), or a sentence saying
// it did not come back. A request without a known shell tool (an agent's
// title or summary calls) gets the ordinary numbered chunks. Agent wins
// over ToolCall.
//
// The command upper-cases the marker on its way to the file, so the output
// the fake waits for never appears in the command's own text (the marker
// has lower-case letters): an agent that echoed the command back, without
// running it, does not pass for one that ran it.
type Agent struct {
	// Marker is the text the command writes, upper-cased; empty means
	// DefaultAgentMarker. Letters, digits, '-', '_' and '.' only, so that it
	// needs no quoting in any shell, and at least one lower-case letter.
	Marker string
	// File is the file the command writes, relative to the agent's working
	// directory; empty means DefaultAgentFile. Same characters as Marker.
	File string
}

// Output is what the scripted command prints and writes into File: the
// marker, upper-cased.
func (a *Agent) Output() string {
	m := a.Marker
	if m == "" {
		m = DefaultAgentMarker
	}
	return strings.ToUpper(m)
}

// FileName is the file the scripted command writes.
func (a *Agent) FileName() string {
	if a.File == "" {
		return DefaultAgentFile
	}
	return a.File
}

// Command is the shell command the scripted tool call runs.
func (a *Agent) Command() string {
	m := a.Marker
	if m == "" {
		m = DefaultAgentMarker
	}
	f := a.FileName()
	return "printf '%s\\n' " + m + " | tr a-z A-Z > " + f + " && cat " + f
}

// agentTools are the shell tools an Agent script knows, by the name the
// agent declares them under, each with how its arguments carry a command:
// Claude Code's Bash, the Codex CLI's exec_command (0.171.0), shell (an
// argv array) and shell_command of older Codex versions, and Gemini CLI's
// run_shell_command.
var agentTools = map[string]func(command string) string{
	"Bash": func(c string) string {
		return argsJSON(map[string]any{"command": c, "description": "Write the marker file"})
	},
	"exec_command":      func(c string) string { return argsJSON(map[string]any{"cmd": c}) },
	"shell":             func(c string) string { return argsJSON(map[string]any{"command": []string{"bash", "-lc", c}}) },
	"shell_command":     func(c string) string { return argsJSON(map[string]any{"command": c}) },
	"run_shell_command": func(c string) string { return argsJSON(map[string]any{"command": c}) },
}

func argsJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings always marshal
	}
	return string(b)
}

// turn is what a reply depends on in a request's conversation, read from
// each API's own shapes.
type turn struct {
	// tools are the names of the tools the request declares, in order.
	tools []string
	// results are the texts of the tool results the conversation carries.
	results []string
	// answered says the last message is a tool result.
	answered bool
}

// sentence cuts text into word pieces, as a model streams it.
func sentence(text string) []string {
	var pieces []string
	for i, w := range strings.Fields(text) {
		if i > 0 {
			w = " " + w
		}
		pieces = append(pieces, w)
	}
	return pieces
}

// script is the agent's answer to t, and false when t declares no shell
// tool the script knows.
func (a *Agent) script(t turn) (p plan, name, args string, ok bool) {
	for _, tool := range t.tools {
		makeArgs, known := agentTools[tool]
		if !known {
			continue
		}
		p.finish = "stop"
		if len(t.results) == 0 {
			p.pieces = sentence("Running a command that writes " + a.FileName() + ".")
			return p, tool, makeArgs(a.Command()), true
		}
		text := "The command's output did not come back."
		for _, r := range t.results {
			if strings.Contains(r, a.Output()) {
				text = "The command printed " + a.Output() + "."
				break
			}
		}
		p.pieces = sentence(text)
		return p, "", "", true
	}
	return plan{}, "", "", false
}

// reply lays out the answer to t: an Agent's script when b has one that
// applies, otherwise b.Chunks pieces (see planReply) followed by the tool
// call b.ToolCall scripts, if any (see toolFor), unless the reply was cut
// by maxTokens.
func reply(b Behavior, t turn, maxTokens int, stops []string) (p plan, name, args string, calls bool) {
	if b.Agent != nil {
		if p, name, args, ok := b.Agent.script(t); ok {
			return p, name, args, name != ""
		}
	}
	p = planReply(b, maxTokens, stops)
	name, args, calls = toolFor(b, t.tools, t.answered)
	return p, name, args, calls && p.finish != "length"
}

// Validate checks that Marker and File need no quoting in a shell.
func (a *Agent) Validate() error {
	for what, v := range map[string]string{"marker": a.Marker, "file": a.File} {
		for _, r := range v {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				return fmt.Errorf("agent %s %q: only letters, digits, '-', '_' and '.' are allowed", what, v)
			}
		}
	}
	if a.Marker != "" && strings.ToUpper(a.Marker) == a.Marker {
		return fmt.Errorf("agent marker %q: it needs a lower-case letter, or the command's text holds its output", a.Marker)
	}
	return nil
}
