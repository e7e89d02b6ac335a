module neoevents/bench/floors/gofloor

go 1.22
