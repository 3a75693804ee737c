# Corelight's Community ID reference (the `communityid` package, pinned by `cargo xtask
# bootstrap`): one JSON tuple per input line, {"seed", "proto" ("tcp"|"udp"), "saddr", "daddr",
# "sport", "dport"}, one Community ID per output line. Run by community_id_reference.rs.
import json
import sys

import communityid

for line in sys.stdin:
    t = json.loads(line)
    make = {"tcp": communityid.FlowTuple.make_tcp, "udp": communityid.FlowTuple.make_udp}[t["proto"]]
    flow = make(t["saddr"], t["daddr"], t["sport"], t["dport"])
    print(communityid.CommunityID(seed=t["seed"]).calc(flow))
