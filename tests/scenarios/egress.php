<?php
// Scenario c: a web shell whose command connects out: php-fpm worker -> sh -> socat.
// The port comes from the request so the test can pick a free one.
$port = intval($_GET["port"] ?? "0");
// The trailing echo keeps sh alive (dash would otherwise exec socat in its place), so
// socat is a grandchild of the php-fpm worker.
system("socat -u OPEN:/dev/null TCP4:127.0.0.1:$port,connect-timeout=2; echo done");
