// Builds the real h2spec for the conformance tests (tests/tests/conformance) from
// github.com/summerwind/h2spec: its command is a `main` package, so this module names it
// as a tool and the test runs `go build github.com/summerwind/h2spec/cmd/h2spec` here
// (cached under target/fairway-h2spec/bin/h2spec). Refresh with
// `go get -tool github.com/summerwind/h2spec/cmd/h2spec@VERSION && go mod tidy`.
module fairway.dev/tests/h2spec

go 1.26.0

tool github.com/summerwind/h2spec/cmd/h2spec

require (
	github.com/fatih/color v1.19.0 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/mattn/go-colorable v0.1.14 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	github.com/summerwind/h2spec v2.2.1+incompatible // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)
