package fakellm_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"google.golang.org/genai"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

var agentScript = &fakellm.Agent{Marker: "test-marker-1", File: "out.txt"}

// runTool runs a scripted shell command as an agent would, in a directory
// of its own, and checks that it wrote the marker file.
func runTool(t *testing.T, command string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("bash", "-c", command)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", command, err, out)
	}
	file, err := os.ReadFile(filepath.Join(dir, "out.txt"))
	if err != nil || strings.TrimSpace(string(file)) != "TEST-MARKER-1" {
		t.Fatalf("the command wrote %q (%v)", file, err)
	}
	return string(out)
}

const (
	agentDone   = "The command printed TEST-MARKER-1."
	agentFailed = "The command's output did not come back."
)

func TestAgentOpenAIChat(t *testing.T) {
	client, _ := start(t, &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Agent: agentScript}})
	ctx := context.Background()

	// Without a shell tool the script stays out of the way.
	p := chatParams("m", "make a title")
	resp, err := client.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != "chunk0 chunk1 chunk2 chunk3 chunk4" {
		t.Errorf("without tools: %q", resp.Choices[0].Message.Content)
	}

	p = chatParams("m", "write the file")
	p.Tools = []openai.ChatCompletionToolUnionParam{
		openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "view_image"}),
		openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "exec_command"}),
	}
	resp, err = client.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	m := resp.Choices[0].Message
	if len(m.ToolCalls) != 1 || m.ToolCalls[0].Function.Name != "exec_command" {
		t.Fatalf("first turn: %+v", m)
	}
	var args struct{ Cmd string }
	if err := json.Unmarshal([]byte(m.ToolCalls[0].Function.Arguments), &args); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(args.Cmd, "TEST-MARKER-1") {
		t.Errorf("the command %q holds its own output", args.Cmd)
	}
	out := runTool(t, args.Cmd)

	for result, want := range map[string]string{out: agentDone, "command not found": agentFailed} {
		next := p
		next.Messages = append(append([]openai.ChatCompletionMessageParamUnion(nil), p.Messages...), m.ToParam(), openai.ToolMessage(result, m.ToolCalls[0].ID))
		resp, err := client.Chat.Completions.New(ctx, next)
		if err != nil {
			t.Fatal(err)
		}
		if c := resp.Choices[0]; c.Message.Content != want || c.FinishReason != "stop" || len(c.Message.ToolCalls) != 0 {
			t.Errorf("result %q: %+v, want %q", result, c, want)
		}
	}
}

func TestAgentResponses(t *testing.T) {
	client, _ := start(t, &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Agent: agentScript}})
	ctx := context.Background()
	p := responsesParams("m", userItem("write the file"))
	p.Tools = []responses.ToolUnionParam{weatherFunction, responses.ToolParamOfFunction("shell", nil, false)}
	resp, err := client.Responses.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	call := resp.Output[len(resp.Output)-1].AsFunctionCall()
	var args struct{ Command []string }
	if call.Name != "shell" || json.Unmarshal([]byte(call.Arguments), &args) != nil || len(args.Command) != 3 || args.Command[0] != "bash" {
		t.Fatalf("first turn: %+v", resp.Output)
	}
	out := responses.ResponseInputItemParamOfFunctionCallOutput(runTool(t, args.Command[2]))
	out.OfFunctionCallOutput.CallID = openai.String(call.CallID)
	p.Input.OfInputItemList = append(p.Input.OfInputItemList, responses.ResponseInputItemParamOfFunctionCall(call.Arguments, call.CallID, call.Name), out)
	resp, err = client.Responses.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if resp.OutputText() != agentDone || len(resp.Output) != 1 {
		t.Errorf("second turn: %+v", resp.Output)
	}
}

func TestAgentAnthropic(t *testing.T) {
	c, _ := anthropicClient(t, &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Agent: agentScript}})
	ctx := context.Background()
	bash := anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{Name: "Bash", InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"command": map[string]any{"type": "string"}}}}}
	p := anthropic.MessageNewParams{
		Model: "claude-test", MaxTokens: 1000, Tools: []anthropic.ToolUnionParam{weatherTool, bash},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("write the file"))},
	}
	msg, err := c.Messages.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	use := msg.Content[len(msg.Content)-1]
	var args struct{ Command string }
	if msg.StopReason != anthropic.StopReasonToolUse || use.Name != "Bash" || json.Unmarshal(use.Input, &args) != nil {
		t.Fatalf("first turn: %+v", msg)
	}
	p.Messages = append(p.Messages, msg.ToParam(), anthropic.NewUserMessage(anthropic.NewToolResultBlock(use.ID, runTool(t, args.Command), false)))
	msg, err = c.Messages.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 1 || msg.Content[0].Text != agentDone || msg.StopReason != anthropic.StopReasonEndTurn {
		t.Errorf("second turn: %+v", msg)
	}
}

func TestAgentGemini(t *testing.T) {
	c, _ := geminiClient(t, &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Agent: agentScript}}, testKey)
	ctx := context.Background()
	cfg := &genai.GenerateContentConfig{Tools: []*genai.Tool{{FunctionDeclarations: []*genai.FunctionDeclaration{weatherDecl, {Name: "run_shell_command"}}}}}
	contents := genai.Text("write the file")
	resp, err := c.Models.GenerateContent(ctx, "gemini-test", contents, cfg)
	if err != nil {
		t.Fatal(err)
	}
	calls := resp.FunctionCalls()
	if len(calls) != 1 || calls[0].Name != "run_shell_command" {
		t.Fatalf("first turn: %+v", resp.Candidates[0].Content)
	}
	command, _ := calls[0].Args["command"].(string)
	contents = append(contents, resp.Candidates[0].Content,
		genai.NewContentFromFunctionResponse("run_shell_command", map[string]any{"output": runTool(t, command)}, genai.RoleUser))
	resp, err = c.Models.GenerateContent(ctx, "gemini-test", contents, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Text() != agentDone || len(resp.FunctionCalls()) != 0 {
		t.Errorf("second turn: %q, calls %+v", resp.Text(), resp.FunctionCalls())
	}
}

func TestAgentValidate(t *testing.T) {
	if err := (&fakellm.Agent{Marker: "ok-1.2_3"}).Validate(); err != nil {
		t.Error(err)
	}
	if err := (&fakellm.Agent{File: "a b; rm -rf"}).Validate(); err == nil {
		t.Error("a file name with spaces and a semicolon passed")
	}
	if err := (&fakellm.Agent{Marker: "LOUD-1"}).Validate(); err == nil {
		t.Error("a marker its command would hold as it is passed")
	}
}
