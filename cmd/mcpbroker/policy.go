package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/opa"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/urfave/cli/v2"
)

// policyQuery is the one rule the broker asks an inbound policy about.
const policyQuery = "data.orchestrator.result"

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "test and debug inbound authorization policies",
		Subcommands: []*cli.Command{
			policyTestCommand(),
			policyEvalCommand(),
		},
	}
}

func policyTestCommand() *cli.Command {
	return &cli.Command{
		Name:      "test",
		Usage:     "run the Rego tests of policies, like opa test",
		ArgsUsage: "[DIR|FILE...] (default policies/)",
		Description: "Every .rego file under the arguments is parsed as Rego v1 or, failing that, as the\n" +
			"pre-1.0 syntax. Each policy FOO.rego is compiled with its tests in FOO_test.rego and apart\n" +
			"from the other policies, as the broker compiles one policy per app: every example is\n" +
			"package orchestrator, so compiled together they would conflict.\n" +
			"The last line is \"N passed, N failed\"; the exit status is non-zero when a test fails,\n" +
			"a file does not parse or compile, or no test is found.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "list every test, not only failures"},
		},
		Action: func(c *cli.Context) error {
			paths := c.Args().Slice()
			if len(paths) == 0 {
				paths = []string{"policies"}
			}
			return testPolicies(c.Context, c.App.Writer, paths, c.Bool("verbose"))
		},
	}
}

func policyEvalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "evaluate an app's inbound policy against one input and show the decision",
		Description: "Prints the input, the policy's raw data.orchestrator.result and the decision the broker\n" +
			"would take. Exits 0 whatever the decision; non-zero only when the configuration, the\n" +
			"policy or the input cannot be loaded.",
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "app", Usage: "the app whose authorization.inbound.opa policy to evaluate", Required: true},
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "policy input JSON `FILE` (- for standard input)", Required: true},
		},
		Action: func(c *cli.Context) error {
			return evalPolicy(c.Context, c.App.Writer, c.App.ErrWriter, c.String("config"), c.String("app"), c.String("input"))
		},
	}
}

// testPolicies runs the tests of the policies under paths and prints the
// failures (every test when verbose) and the summary line.
func testPolicies(ctx context.Context, w io.Writer, paths []string, verbose bool) error {
	files, err := regoFiles(paths)
	if err != nil {
		return cli.Exit(fmt.Sprintf("policy test: %v", err), 1)
	}

	var (
		results  []*tester.Result
		problems int // files that did not parse or compile
	)
	for _, unit := range testUnits(files) {
		modules, bad := parseUnit(w, unit)
		if bad {
			// Running the tests beside a broken policy could pass
			// vacuously (not allowed is true of an absent rule).
			problems++
			continue
		}
		unitResults, err := runTests(ctx, modules)
		if err != nil {
			printErrors(w, err)
			problems++
			continue
		}
		results = append(results, unitResults...)
	}

	slices.SortFunc(results, func(a, b *tester.Result) int {
		return cmp.Or(
			cmp.Compare(a.Location.File, b.Location.File),
			cmp.Compare(a.Location.Row, b.Location.Row),
			cmp.Compare(a.Name, b.Name),
		)
	})
	var passed, failed, skipped int
	for _, r := range results {
		switch {
		case r.Skip:
			skipped++
			if verbose {
				fmt.Fprintf(w, "SKIP %s\n", testLabel(r))
			}
		case r.Pass():
			passed++
			if verbose {
				fmt.Fprintf(w, "PASS %s\n", testLabel(r))
			}
		default:
			failed++
			printFailure(w, r)
		}
	}
	if skipped > 0 {
		fmt.Fprintf(w, "%d skipped\n", skipped)
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", passed, failed)

	switch {
	case problems > 0:
		return cli.Exit(fmt.Sprintf("policy test: %d policy(ies) did not parse or compile", problems), 1)
	case failed > 0:
		return cli.Exit(fmt.Sprintf("policy test: %d test(s) failed", failed), 1)
	case passed+skipped == 0:
		return cli.Exit(fmt.Sprintf("policy test: no tests in %s", strings.Join(paths, " ")), 1)
	}
	return nil
}

// regoFiles lists the .rego files named by or under paths, skipping hidden
// directories.
func regoFiles(paths []string) ([]string, error) {
	var files []string
	for _, root := range paths {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != root && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if path == root || strings.HasSuffix(path, ".rego") {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

// testUnits groups each policy FOO.rego with its tests FOO_test.rego; a
// file that has no partner is a unit of its own.
func testUnits(files []string) [][]string {
	units := map[string][]string{}
	for _, file := range files {
		key := strings.TrimSuffix(strings.TrimSuffix(file, ".rego"), "_test")
		units[key] = append(units[key], file)
	}
	keys := make([]string, 0, len(units))
	for key := range units {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	grouped := make([][]string, 0, len(keys))
	for _, key := range keys {
		grouped = append(grouped, units[key])
	}
	return grouped
}

// parseUnit parses a unit's files, printing the errors of those that do
// not parse; bad reports whether any did not.
func parseUnit(w io.Writer, files []string) (modules map[string]*ast.Module, bad bool) {
	modules = make(map[string]*ast.Module, len(files))
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintln(w, err)
			bad = true
			continue
		}
		module, err := parseRego(file, string(text))
		if err != nil {
			printErrors(w, err)
			bad = true
			continue
		}
		modules[file] = module
	}
	return modules, bad
}

// runTests compiles modules and runs their tests. A module that parsed as
// Rego v1 can still fail to compile as v1 (builtins v1 removed, such as
// re_match); like the broker, it is then tried as pre-1.0 Rego.
func runTests(ctx context.Context, modules map[string]*ast.Module) ([]*tester.Result, error) {
	results, err := runTestsOnce(ctx, modules)
	if err == nil {
		return results, nil
	}
	asV0 := make(map[string]*ast.Module, len(modules))
	changed := false
	for file, module := range modules {
		asV0[file] = module
		if module.RegoVersion() != ast.RegoV1 {
			continue
		}
		if m, errV0 := parseFileAs(file, ast.RegoV0); errV0 == nil {
			asV0[file], changed = m, true
		}
	}
	if changed {
		if results, errV0 := runTestsOnce(ctx, asV0); errV0 == nil {
			return results, nil
		}
	}
	return nil, err
}

func runTestsOnce(ctx context.Context, modules map[string]*ast.Module) ([]*tester.Result, error) {
	// Each run gets its own runner: the runner keeps its compiler.
	ch, err := tester.NewRunner().SetModules(modules).RunTests(ctx, nil)
	if err != nil {
		return nil, err
	}
	var results []*tester.Result
	for r := range ch {
		results = append(results, r)
	}
	return results, nil
}

// parseFileAs parses file in one Rego version.
func parseFileAs(file string, version ast.RegoVersion) (*ast.Module, error) {
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return parseModule(file, string(text), version)
}

func testLabel(r *tester.Result) string {
	return fmt.Sprintf("%s:%d: %s.%s", r.Location.File, r.Location.Row, r.Package, r.Name)
}

func printFailure(w io.Writer, r *tester.Result) {
	if r.Error != nil {
		fmt.Fprintf(w, "ERROR %s: %v\n", testLabel(r), r.Error)
	} else {
		fmt.Fprintf(w, "FAIL %s\n", testLabel(r))
	}
	if len(r.SubResults) > 0 {
		fmt.Fprint(w, indent(r.SubResults.String()))
	}
	if len(r.Output) > 0 {
		fmt.Fprint(w, indent(string(r.Output)))
	}
}

func indent(text string) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	return "    " + strings.Join(lines, "\n    ") + "\n"
}

// printErrors prints parse and compile errors one per line, each starting
// with its file:line.
func printErrors(w io.Writer, err error) {
	var errs ast.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e)
		}
		return
	}
	fmt.Fprintln(w, err)
}

// parseRego parses a module as Rego v1 or, when that fails, as the pre-1.0
// syntax Strata's published policies use. When both fail, the errors of the
// parse that got further into the file are returned: that is more likely
// the syntax its author meant.
func parseRego(filename, text string) (*ast.Module, error) {
	module, errV1 := parseModule(filename, text, ast.RegoV1)
	if errV1 == nil {
		return module, nil
	}
	module, errV0 := parseModule(filename, text, ast.RegoV0)
	if errV0 == nil {
		return module, nil
	}
	if firstRow(errV0) > firstRow(errV1) {
		return nil, errV0
	}
	return nil, errV1
}

func parseModule(filename, text string, version ast.RegoVersion) (*ast.Module, error) {
	module, err := ast.ParseModuleWithOpts(filename, text, ast.ParserOptions{RegoVersion: version})
	if err == nil && module == nil {
		err = ast.Errors{ast.NewError(ast.ParseErr, &ast.Location{File: filename, Row: 1, Col: 1}, "empty module")}
	}
	return module, err
}

// firstRow is the line of an error's first problem; 0 when unknown.
func firstRow(err error) int {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		return 0
	}
	row := 0
	for _, e := range errs {
		if e.Location != nil && (row == 0 || e.Location.Row < row) {
			row = e.Location.Row
		}
	}
	return row
}

// evalOutput is what policy eval prints.
type evalOutput struct {
	Input    json.RawMessage `json:"input"`
	Result   any             `json:"result"`
	Decision evalDecision    `json:"decision"`
}

// evalDecision is the broker's reading of a result: only allowed == true
// allows, and reason says why.
type evalDecision struct {
	Allowed         bool          `json:"allowed"`
	ExternalMessage string        `json:"external_message,omitempty"`
	Scopes          []string      `json:"scopes,omitempty"`
	Redact          []string      `json:"redact,omitempty"`
	Labels          []string      `json:"labels,omitempty"`
	Approval        *evalApproval `json:"approval,omitempty"`
	Reason          string        `json:"reason"`
}

// evalApproval is the approval a denial asks for.
type evalApproval struct {
	Reason    string `json:"reason,omitempty"`
	Approvers string `json:"approvers"`
	TTL       string `json:"ttl,omitempty"` // empty: approvals.ttl
}

// evalPolicy evaluates app's inbound policy in the configuration at
// configPath against the input in inputPath and prints evalOutput. The
// policy's print() output goes to errW.
func evalPolicy(ctx context.Context, w, errW io.Writer, configPath, appName, inputPath string) error {
	cfg, err := config.Load(configPath)
	if err != nil {
		var problems config.Problems
		if errors.As(err, &problems) {
			return cli.Exit(fmt.Sprintf("%s: %d problem(s)\n%s", configPath, len(problems), err), 1)
		}
		return cli.Exit(err.Error(), 1)
	}
	var app *config.App
	var names []string
	for i := range cfg.Apps {
		names = append(names, cfg.Apps[i].Name)
		if cfg.Apps[i].Name == appName {
			app = &cfg.Apps[i]
		}
	}
	if app == nil {
		return cli.Exit(fmt.Sprintf("policy eval: %s has no app %q (apps: %s)", configPath, appName, strings.Join(names, ", ")), 1)
	}
	if app.Authorization == nil || app.Authorization.Inbound == nil || app.Authorization.Inbound.OPA == nil {
		return cli.Exit(fmt.Sprintf("policy eval: app %q has no authorization.inbound.opa policy", appName), 1)
	}
	source := app.Authorization.Inbound.OPA
	filename, text := source.Name, source.Rego
	if source.File != "" {
		filename = source.File
		if !filepath.IsAbs(filename) {
			filename = filepath.Join(filepath.Dir(configPath), filename)
		}
		b, err := os.ReadFile(filename)
		if err != nil {
			return cli.Exit(fmt.Sprintf("policy eval: policy %q: %v", source.Name, err), 1)
		}
		text = string(b)
	}
	query, err := preparePolicy(ctx, filename, text, errW)
	if err != nil {
		var b strings.Builder
		printErrors(&b, err)
		return cli.Exit(fmt.Sprintf("policy eval: policy %q:\n%s", source.Name, strings.TrimRight(b.String(), "\n")), 1)
	}

	raw, input, err := readPolicyInput(inputPath)
	if err != nil {
		return cli.Exit(fmt.Sprintf("policy eval: %v", err), 1)
	}
	out := evalOutput{Input: raw}
	rs, err := query.Eval(ctx, rego.EvalInput(input))
	switch {
	case err != nil:
		out.Decision.Reason = "evaluation error: " + err.Error()
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		out.Decision.Reason = "undefined"
	default:
		out.Result = rs[0].Expressions[0].Value
		out.Decision = decide(out.Result)
	}
	encoder := json.NewEncoder(w)
	encoder.SetIndent("", "  ")
	encoder.SetEscapeHTML(false)
	return encoder.Encode(out)
}

// preparePolicy compiles a policy as Rego v1 and, when it does not parse or
// compile as v1, as pre-1.0 Rego.
func preparePolicy(ctx context.Context, filename, text string, printTo io.Writer) (rego.PreparedEvalQuery, error) {
	prepare := func(module *ast.Module) (rego.PreparedEvalQuery, error) {
		return rego.New(
			rego.Query(policyQuery),
			rego.ParsedModule(module),
			rego.EnablePrintStatements(true),
			rego.PrintHook(topdown.NewPrintHook(printTo)),
		).PrepareForEval(ctx)
	}
	module, err := parseRego(filename, text)
	if err != nil {
		return rego.PreparedEvalQuery{}, err
	}
	query, err := prepare(module)
	if err != nil && module.RegoVersion() == ast.RegoV1 {
		if moduleV0, errParse := parseModule(filename, text, ast.RegoV0); errParse == nil {
			if queryV0, errV0 := prepare(moduleV0); errV0 == nil {
				return queryV0, nil
			}
		}
	}
	return query, err
}

// readPolicyInput reads a JSON object from path ("-" is standard input),
// keeping numbers exact.
func readPolicyInput(path string) (json.RawMessage, any, error) {
	var (
		data []byte
		err  error
	)
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, nil, err
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	var input any
	if err := decoder.Decode(&input); err != nil {
		return nil, nil, fmt.Errorf("input %s: %w", path, err)
	}
	if decoder.More() {
		return nil, nil, fmt.Errorf("input %s: more than one JSON value", path)
	}
	if _, ok := input.(map[string]any); !ok {
		return nil, nil, fmt.Errorf("input %s: not a JSON object", path)
	}
	return bytes.TrimSpace(data), input, nil
}

// decide reads a defined result as the broker's engine does (it is the
// engine's reading): anything but an object whose allowed is true denies,
// and malformed scopes, redact, labels or approval deny too.
func decide(result any) evalDecision {
	d := opa.ResultDecision(result)
	out := evalDecision{Allowed: d.Allowed, ExternalMessage: d.ExternalMessage, Scopes: d.Scopes, Redact: d.Redact, Labels: d.Labels, Reason: d.Reason}
	if a := d.Approval; a != nil {
		out.Approval = &evalApproval{Reason: a.Reason, Approvers: a.Approvers}
		if a.TTL > 0 {
			out.Approval.TTL = a.TTL.String()
		}
	}
	return out
}
