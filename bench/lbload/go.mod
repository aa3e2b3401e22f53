module fairway.dev/bench/lbload

go 1.26.0
