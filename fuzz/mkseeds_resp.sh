#!/usr/bin/env bash
# mkseeds_resp.sh - writes the RESP harness's seed corpus (fuzz/corpus/resp).
# Each seed: one mode byte (low 3 bits: how the stream is cut into reads,
# bit 3: the server requires a password), then what a client sends.
# Run by hand after changing the seeds; the output is committed.
set -eu
out=${1:-fuzz/corpus/resp}
mkdir -p "$out"
n=0
seed() { # seed NAME MODEBYTE(octal) PRINTF-FORMAT...
	local name=$1 mode=$2; shift 2
	{ printf "\\$mode"; printf "$@"; } >"$out/$name"
	n=$((n + 1))
}
mb() { # multibulk encoding of the arguments
	printf '*%d\r\n' $#
	for a in "$@"; do printf '$%d\r\n%s\r\n' ${#a} "$a"; done
}
seed set-get 007 '%s\n' "$(mb SET k v; mb GET k)"
seed set-get-bytewise 000 '%s\n' "$(mb SET key value; mb GET key; mb DEL key)"
seed inline 006 'SET a 1\r\nINCR a\r\nGET a\r\nPING\r\n'
seed inline-quotes 003 'SET "a b" "x\\ty\\x41\\n"\r\nSET '"'"'q'"'"' '"'"'it\\'"'"'s'"'"'\r\nKEYS *\r\n'
seed inline-unbalanced 007 'SET "abc\r\n'
seed empty-lines 005 '\r\n\n*0\r\n*-1\r\nPING\r\n'
seed bad-count 007 '*x\r\n'
seed bad-dollar 007 '*1\r\n+PING\r\n'
seed bad-bulklen 007 '*1\r\n$-5\r\n'
seed big-bulk 006 '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$40000\r\n%040000d\r\n' 0
seed pipeline 004 '%s\n' "$(mb MSET a 1 b 2 c 3; mb MGET a b c d; mb EXISTS a z; mb DBSIZE; mb TYPE a; mb RENAME a z)"
seed lists 007 '%s\n' "$(mb RPUSH l a b c; mb LPUSH l z; mb LRANGE l 0 -1; mb LINDEX l 1; mb LPOP l; mb RPOP l 2; mb LLEN l)"
seed hashes 007 '%s\n' "$(mb HSET h f1 v1 f2 v2; mb HGET h f1; mb HMGET h f1 f3; mb HINCRBY h n 5; mb HGETALL h; mb HDEL h f1; mb HLEN h)"
seed sets 007 '%s\n' "$(mb SADD s a b c; mb SISMEMBER s a; mb SMEMBERS s; mb SREM s a; mb SCARD s; mb SPOP s)"
seed zsets 007 '%s\n' "$(mb ZADD z 1 a 2.5 b -inf c; mb ZSCORE z b; mb ZRANGE z 0 -1 WITHSCORES; mb ZRANK z b; mb ZREM z a; mb ZPOPMIN z; mb ZCARD z)"
seed expire 007 '%s\n' "$(mb SET e v EX 100; mb TTL e; mb PEXPIRE e 5000; mb PTTL e; mb PERSIST e; mb EXPIREAT e 1; mb GET e)"
seed strings 007 '%s\n' "$(mb SETNX s 1; mb GETSET s 2; mb APPEND s xyz; mb STRLEN s; mb INCRBY s 10; mb DECRBY s 3; mb DECR s; mb SET n 9223372036854775807; mb INCR n)"
seed scan 007 '%s\n' "$(mb MSET a 1 b 2 c 3; mb SCAN 0 MATCH '*' COUNT 10; mb KEYS '[a-b]*'; mb RANDOMKEY)"
seed server 007 '%s\n' "$(mb PING hello; mb ECHO x; mb SELECT 0; mb INFO; mb COMMAND; mb TIME; mb LASTSAVE; mb CLIENT SETNAME me; mb CLIENT GETNAME; mb CLIENT LIST; mb FLUSHALL)"
seed admin 007 '%s\n' "$(mb CONFIG GET '*'; mb SAVE; mb BGSAVE; mb SHUTDOWN NOSAVE)"
seed auth 017 '%s\n' "$(mb GET k; mb AUTH wrong; mb AUTH fuzzpass; mb SET k v; mb GET k)"
seed noauth-big 017 '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n'
seed unknown 007 '%s\n' "$(mb NOSUCHCOMMAND a b c; mb GET; mb SET a)"
seed quit 007 '%s\n' "$(mb PING; mb QUIT; mb PING)"
seed partial 001 '*2\r\n$3\r\nGET\r\n$10\r\nabc'
echo "$n seeds in $out"
