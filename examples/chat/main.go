// Command chat answers a prompt through the Azure OpenAI regions configured in the environment, failing over
// between them as needed. It reads the variables that failover.NewFromEnv reads (AZURE_OPENAI_*, OPENAI_*,
// FAILOVER_*; see .env.example) from the process environment and from a .env file in the working directory, when
// there is one; a variable set in the process environment wins over the file.
//
//	go run ./examples/chat "Write a haiku about failover."
//	echo "Summarise this" | go run ./examples/chat -v
//	go run ./examples/chat -stream "Tell me a story."     # print the answer as it arrives
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/aoai-failover/failover"
	openai "github.com/sashabaranov/go-openai"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdin, os.Stdout, os.Stderr, os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

// usage is the -h text, before the flags.
const usage = `Usage: go run ./examples/chat [flags] [prompt ...]

Answers the prompt (the arguments, or else standard input) through the Azure OpenAI regions configured in the
environment, failing over between them as needed. The variables (AZURE_OPENAI_*, OPENAI_*, FAILOVER_*; see
.env.example) are read from the process environment and from a .env file in the working directory, when there
is one; the process environment wins.

Flags:
`

func run(ctx context.Context, in io.Reader, out, log io.Writer, args []string) error {
	flags := flag.NewFlagSet("chat", flag.ContinueOnError)
	flags.SetOutput(log)
	flags.Usage = func() {
		fmt.Fprint(flags.Output(), usage)
		flags.PrintDefaults()
	}
	model := flags.String("model", "", "model to ask for (default: FAILOVER_MODEL)")
	verbose := flags.Bool("v", false, "print every attempt to standard error")
	stream := flags.Bool("stream", false, "stream the answer as it arrives")
	if err := flags.Parse(args); err != nil {
		return err
	}
	prompt := strings.Join(flags.Args(), " ")
	if prompt == "" {
		data, err := io.ReadAll(bufio.NewReader(in))
		if err != nil {
			return err
		}
		prompt = strings.TrimSpace(string(data))
	}
	if prompt == "" {
		return fmt.Errorf("no prompt: pass it as arguments or on standard input")
	}

	var opts []failover.Option
	if *model != "" {
		opts = append(opts, failover.WithModel(*model))
	}
	client, err := failover.NewFromEnv(opts...)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	if *verbose {
		ctx = failover.WithTrace(ctx, &failover.Trace{AttemptDone: func(a failover.Attempt) {
			fmt.Fprintln(log, a)
		}})
	}
	messages := []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: prompt}}
	if *stream {
		return streamReply(ctx, client, messages, out)
	}
	reply, err := client.ChatCompletion(ctx, messages)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, reply)
	return nil
}

// streamReply prints the answer as it arrives. A stream that breaks off after its first words is an error: the
// words already printed stay, and the error says where the stream came from.
func streamReply(ctx context.Context, client *failover.Client, messages []openai.ChatCompletionMessage, out io.Writer) error {
	stream, err := client.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{Messages: messages})
	if err != nil {
		return err
	}
	defer stream.Close()
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			fmt.Fprintln(out)
			return nil
		}
		if err != nil {
			fmt.Fprintln(out)
			return err
		}
		for _, c := range chunk.Choices {
			fmt.Fprint(out, c.Delta.Content)
		}
	}
}
