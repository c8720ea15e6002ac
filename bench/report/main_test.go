package main

import "testing"

// TestBuildPairsRounds: ratios and costs compare each deployment with the
// one it is measured against in the same round, so that how fast the
// machine was in a round does not count as a difference between the two.
func TestBuildPairsRounds(t *testing.T) {
	rounds := []struct{ bareRPS, basicRPS, bareCPU, basicCPU float64 }{
		{1000, 1100, 200, 180},
		{1500, 1650, 150, 135},
		{3000, 1000, 300, 400}, // a round disturbed for basic alone
	}
	var ls []line
	for i, r := range rounds {
		ls = append(ls,
			line{Name: "bare", Test: "load", Scenario: "stream", Round: i, Requests: 100, RPS: r.bareRPS, CPUusPerRequest: r.bareCPU},
			line{Name: "basic", Test: "load", Scenario: "stream", Round: i, Requests: 100, RPS: r.basicRPS, CPUusPerRequest: r.basicCPU},
		)
	}
	tb, problems := build(ls, "bare")
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	var basic loadRow
	for _, r := range tb.Load {
		if r.Deployment == "basic" {
			basic = r
		}
	}
	// The medians of the absolute figures would give 1100/1500 and 180/200.
	if basic.Rounds != 3 || basic.RPSRatio != 1.1 || basic.CPURatio != 0.9 {
		t.Errorf("basic: %+v", basic)
	}
	if len(tb.Costs) != 1 {
		t.Fatalf("costs: %+v", tb.Costs)
	}
	// From the medians of the absolute figures: 0.73x and -20 us.
	if c := tb.Costs[0]; c.Deployment != "basic" || c.Over != "bare" || c.RPSRatio != 1.1 || c.AddedCPUus != -15 {
		t.Errorf("cost: %+v", c)
	}
}
