module neoevents/bench/stormgen

go 1.22
