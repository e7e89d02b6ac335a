module neoevents/bench/receiver

go 1.22
