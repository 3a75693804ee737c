<?php
// Scenario c: a web shell. php's system() runs the command through `sh -c`.
system("id");
