# Drawn by servelab; run `gnuplot plots.gnuplot` in this folder to draw it again.
set datafile separator ','
set key autotitle columnhead
set grid
stats 'static/requests.csv' using (($7==1) ? 1 : 0) nooutput
n_ok0 = STATS_sum > 0 ? STATS_sum : 1
stats 'static/requests.csv' using (($7==1 && $6>1) ? 1 : 0) nooutput
n_tpot0 = STATS_sum > 0 ? STATS_sum : 1
stats 'continuous-swap/requests.csv' using (($7==1) ? 1 : 0) nooutput
n_ok1 = STATS_sum > 0 ? STATS_sum : 1
stats 'continuous-swap/requests.csv' using (($7==1 && $6>1) ? 1 : 0) nooutput
n_tpot1 = STATS_sum > 0 ? STATS_sum : 1
stats 'continuous-recompute/requests.csv' using (($7==1) ? 1 : 0) nooutput
n_ok2 = STATS_sum > 0 ? STATS_sum : 1
stats 'continuous-recompute/requests.csv' using (($7==1 && $6>1) ? 1 : 0) nooutput
n_tpot2 = STATS_sum > 0 ? STATS_sum : 1
set terminal svg size 1000,450 dynamic background rgb 'white'
set output 'latency_cdf.svg'
set multiplot layout 1,2 title 'Latency CDFs of each server (dashed: the SLO)'
set ylabel 'fraction of requests'
set yrange [0:1]
set key bottom right
set logscale x
set xlabel 'TTFT (seconds, log scale)'
set arrow from 2, graph 0 to 2, graph 1 nohead dashtype 2 lc rgb 'gray40'
plot 'static/requests.csv' using ($8 > 1e-4 ? $8 : 1e-4):(($7==1) ? 1.0/n_ok0 : 0) smooth cumulative title 'static' with lines lw 2, 'continuous-swap/requests.csv' using ($8 > 1e-4 ? $8 : 1e-4):(($7==1) ? 1.0/n_ok1 : 0) smooth cumulative title 'continuous-swap' with lines lw 2, 'continuous-recompute/requests.csv' using ($8 > 1e-4 ? $8 : 1e-4):(($7==1) ? 1.0/n_ok2 : 0) smooth cumulative title 'continuous-recompute' with lines lw 2
unset arrow
set xlabel 'TPOT (milliseconds, log scale)'
set arrow from 100, graph 0 to 100, graph 1 nohead dashtype 2 lc rgb 'gray40'
plot 'static/requests.csv' using ($9*1000 > 1e-4 ? $9*1000 : 1e-4):(($7==1 && $6>1) ? 1.0/n_tpot0 : 0) smooth cumulative title 'static' with lines lw 2, 'continuous-swap/requests.csv' using ($9*1000 > 1e-4 ? $9*1000 : 1e-4):(($7==1 && $6>1) ? 1.0/n_tpot1 : 0) smooth cumulative title 'continuous-swap' with lines lw 2, 'continuous-recompute/requests.csv' using ($9*1000 > 1e-4 ? $9*1000 : 1e-4):(($7==1 && $6>1) ? 1.0/n_tpot2 : 0) smooth cumulative title 'continuous-recompute' with lines lw 2
unset multiplot
unset arrow
unset logscale x
set yrange [*:*]
set terminal svg size 1100,980 dynamic background rgb 'white'
set output 'over_time.svg'
set multiplot layout 3,2 title 'Throughput and server queues over time'
set key top right font ',10'
set xlabel 'seconds since the start'
unset y2label
unset y2tics
set ytics mirror
set ylabel 'output tokens/s'
set title 'static'
plot 'static/throughput.csv' using 1:2 title 'output tokens/s' with steps lw 2
set ylabel 'requests'
set y2label 'KV in use (%)'
set y2range [0:100]
set ytics nomirror
set y2tics
plot 'static/server.csv' using 1:2 title 'running' with lines lw 2, '' using 1:3 title 'waiting' with lines lw 2, '' using 1:4 title 'swapped' with lines lw 2, '' using 1:($5*100) axes x1y2 title 'KV usage' with lines dashtype 2
set xlabel 'seconds since the start'
unset y2label
unset y2tics
set ytics mirror
set ylabel 'output tokens/s'
set title 'continuous-swap'
plot 'continuous-swap/throughput.csv' using 1:2 title 'output tokens/s' with steps lw 2
set ylabel 'requests'
set y2label 'KV in use (%)'
set y2range [0:100]
set ytics nomirror
set y2tics
plot 'continuous-swap/server.csv' using 1:2 title 'running' with lines lw 2, '' using 1:3 title 'waiting' with lines lw 2, '' using 1:4 title 'swapped' with lines lw 2, '' using 1:($5*100) axes x1y2 title 'KV usage' with lines dashtype 2
set xlabel 'seconds since the start'
unset y2label
unset y2tics
set ytics mirror
set ylabel 'output tokens/s'
set title 'continuous-recompute'
plot 'continuous-recompute/throughput.csv' using 1:2 title 'output tokens/s' with steps lw 2
set ylabel 'requests'
set y2label 'KV in use (%)'
set y2range [0:100]
set ytics nomirror
set y2tics
plot 'continuous-recompute/server.csv' using 1:2 title 'running' with lines lw 2, '' using 1:3 title 'waiting' with lines lw 2, '' using 1:4 title 'swapped' with lines lw 2, '' using 1:($5*100) axes x1y2 title 'KV usage' with lines dashtype 2
unset multiplot
