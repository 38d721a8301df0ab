"""protocol.py - redis-ckpt's replies are byte-for-byte those of a real
redis-server 7.0 for every supported command (run side by side on the same
command script), pipelining and inline commands work, malformed RESP gets
Redis's protocol error and only that client is closed, and the limits
(maxclients, a full heap, requirepass, bad options) behave as specified."""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from rclib import Conn, Server, check, encode, fail, parse, tmpdir  # noqa: E402

# Each entry: a command, or ("sort", command) when the element order of the
# reply is unspecified (hash/set iteration order differs between servers), or
# ("approx", command) for a PTTL.
SCRIPT = [
    # strings
    ["SET", "s1", "hello"], ["GET", "s1"], ["GET", "nokey"], ["SET", "s1", "v2", "XX"],
    ["SET", "s1", "v3", "NX"], ["SET", "s2", "v", "NX"], ["SET", "s2", "x", "XX", "GET"],
    ["SET", "s9", "x", "GET"], ["SET", "s1", "a", "EX", "100"], ["TTL", "s1"], ["SET", "s1", "b", "KEEPTTL"],
    ["TTL", "s1"], ["SET", "s1", "c"], ["TTL", "s1"], ["SET", "s1", "c", "PX", "100000"], ("approx", ["PTTL", "s1"]),
    ["SET", "s1", "v", "EX", "0"], ["SET", "s1", "v", "EX", "-5"], ["SET", "s1", "v", "EX", "abc"],
    ["SET", "s1", "v", "NX", "XX"], ["SET", "s1", "v", "BADOPT"], ["SET", "s1"], ["SET", "s1", "v", "EX", "10", "PX", "5"],
    ["SETNX", "s1", "z"], ["SETNX", "s3", "z"], ["GETSET", "s3", "y"], ["GETSET", "s4", "y"],
    ["MSET", "m1", "1", "m2", "2", "m3", "3"], ["MSET", "m1", "1", "m2"], ["MGET", "m1", "m2", "nokey", "m3"],
    ["INCR", "cnt"], ["INCR", "cnt"], ["INCRBY", "cnt", "10"], ["DECR", "cnt"], ["DECRBY", "cnt", "5"],
    ["INCRBY", "cnt", "abc"], ["INCR", "s1"], ["SET", "big", "9223372036854775807"], ["INCR", "big"],
    ["SET", "neg", "-9223372036854775808"], ["DECR", "neg"], ["SET", "sp", " 1"], ["INCR", "sp"],
    ["SET", "lz", "01"], ["INCR", "lz"], ["APPEND", "ap", "abc"], ["APPEND", "ap", "def"], ["GET", "ap"],
    ["STRLEN", "ap"], ["STRLEN", "nokey"], ["SET", "bin", "a\x00b\r\nc"], ["GET", "bin"], ["STRLEN", "bin"],
    ["GET"], ["GET", "a", "b"],
    # keys
    ["EXISTS", "s1", "s1", "nokey", "m1"], ["DEL", "m1", "m1", "nokey", "m2"], ["EXISTS", "m1"],
    ["EXPIRE", "m3", "100"], ["TTL", "m3"], ["PTTL", "nokey"], ["TTL", "nokey"], ["TTL", "s3"],
    ["EXPIRE", "m3", "200", "NX"], ["EXPIRE", "m3", "200", "XX"], ["EXPIRE", "m3", "50", "GT"], ["EXPIRE", "m3", "50", "LT"],
    ["TTL", "m3"], ["EXPIRE", "m3", "5", "NX", "XX"], ["EXPIRE", "m3", "5", "GT", "LT"], ["EXPIRE", "m3", "5", "FOO"],
    ["EXPIRE", "m3", "x"], ["EXPIRE", "nokey", "100"], ["PERSIST", "m3"], ["PERSIST", "m3"], ["TTL", "m3"],
    ["PEXPIRE", "m3", "100000"], ("approx", ["PTTL", "m3"]), ["EXPIRE", "m3", "-1"], ["EXISTS", "m3"],
    ["TYPE", "s1"], ["TYPE", "nokey"], ["RENAME", "s3", "s5"], ["GET", "s5"], ["GET", "s3"], ["RENAME", "nokey", "x"],
    ["RENAME", "s5", "s5"], ["SET", "r1", "a"], ["EXPIRE", "r1", "100"], ["RENAME", "r1", "s4"], ["TTL", "s4"],
    ["GET", "s4"], ["SELECT", "0"], ["SELECT", "99"], ["SELECT", "x"],
    # lists
    ["LPUSH", "l", "a", "b", "c"], ["RPUSH", "l", "d", "e"], ["LLEN", "l"], ["LRANGE", "l", "0", "-1"],
    ["LRANGE", "l", "1", "2"], ["LRANGE", "l", "-2", "100"], ["LRANGE", "l", "5", "1"], ["LRANGE", "l", "x", "1"],
    ["LINDEX", "l", "0"], ["LINDEX", "l", "-1"], ["LINDEX", "l", "10"], ["LINDEX", "l", "y"],
    ["LPOP", "l"], ["RPOP", "l"], ["LPOP", "l", "2"], ["LPOP", "l", "0"], ["LPOP", "l", "-1"], ["RPOP", "l", "10"],
    ["EXISTS", "l"], ["LPOP", "l"], ["LPOP", "l", "2"], ["LLEN", "l"], ["LPUSH", "s1", "x"], ["LRANGE", "s1", "0", "1"],
    ["TYPE", "l"], ["RPUSH", "l2", "x"], ["TYPE", "l2"], ["LPOP", "l2", "1", "2"],
    # hashes
    ["HSET", "h", "f1", "v1", "f2", "v2"], ["HSET", "h", "f1", "v9", "f3", "v3"], ["HSET", "h", "f1"],
    ["HGET", "h", "f1"], ["HGET", "h", "nof"], ["HGET", "noh", "f"], ["HMGET", "h", "f1", "nof", "f3"],
    ["HLEN", "h"], ("sort", ["HGETALL", "h"]), ["HGETALL", "noh"], ["HDEL", "h", "f1", "nof"], ["HLEN", "h"],
    ["HINCRBY", "h", "n", "5"], ["HINCRBY", "h", "n", "-7"], ["HINCRBY", "h", "f2", "1"], ["HINCRBY", "h", "n", "x"],
    ["HSET", "h", "max", "9223372036854775807"], ["HINCRBY", "h", "max", "1"], ["HGET", "s1", "f"], ["HMSET", "h", "a", "1"],
    ["HDEL", "h", "f2", "f3", "n", "max", "a"], ["EXISTS", "h"],
    # sets
    ["SADD", "st", "a", "b", "c", "a"], ["SADD", "st", "a", "d"], ["SCARD", "st"], ("sort", ["SMEMBERS", "st"]),
    ["SISMEMBER", "st", "a"], ["SISMEMBER", "st", "z"], ["SREM", "st", "a", "z"], ["SCARD", "st"],
    ["SMEMBERS", "nost"], ["SCARD", "nost"], ["SPOP", "nost"], ["SPOP", "nost", "2"], ["SPOP", "st", "-1"],
    ["SADD", "one", "x"], ["SPOP", "one"], ["EXISTS", "one"], ["SADD", "s1", "x"], ["SPOP", "st", "0"],
    ["SADD", "two", "x", "y"], ("sort", ["SPOP", "two", "5"]), ["EXISTS", "two"],
    # sorted sets
    ["ZADD", "z", "1", "a", "2", "b", "3", "c"], ["ZADD", "z", "1.1", "d"], ["ZSCORE", "z", "d"], ["ZSCORE", "z", "a"],
    ["ZADD", "z", "inf", "e", "-inf", "f"], ["ZRANGE", "z", "0", "-1", "WITHSCORES"], ["ZRANGE", "z", "0", "-1"],
    ["ZRANGE", "z", "1", "2"], ["ZRANGE", "z", "-2", "-1", "WITHSCORES"], ["ZRANGE", "z", "5", "1"],
    ["ZRANGE", "z", "0", "1", "REV"], ["ZCARD", "z"], ["ZRANK", "z", "a"], ["ZRANK", "z", "e"], ["ZRANK", "z", "zz"],
    ["ZADD", "z", "NX", "5", "a"], ["ZADD", "z", "XX", "5", "a"], ["ZSCORE", "z", "a"], ["ZADD", "z", "CH", "6", "a", "7", "new"],
    ["ZADD", "z", "INCR", "2.5", "a"], ["ZADD", "z", "INCR", "1", "a", "2", "b"], ["ZADD", "z", "NX", "XX", "1", "a"],
    ["ZADD", "z", "GT", "1", "a"], ["ZADD", "z", "GT", "CH", "100", "a"], ["ZADD", "z", "LT", "CH", "100", "b"],
    ["ZADD", "z", "GT", "NX", "1", "a"], ["ZADD", "z", "1", "a", "2"], ["ZADD", "z", "x", "a"], ["ZADD", "z", "nan", "a"],
    ["ZADD", "z", "INCR", "inf", "e"], ["ZADD", "z", "INCR", "-inf", "e"], ["ZADD", "z", "XX", "INCR", "1", "nomember"],
    ["ZADD", "nz", "XX", "1", "a"], ["EXISTS", "nz"],
    ["ZSCORE", "z", "nomember"], ["ZSCORE", "noz", "a"], ["ZREM", "z", "a", "nomember"], ["ZCARD", "z"],
    ["ZPOPMIN", "z"], ["ZPOPMIN", "z", "2"], ["ZPOPMIN", "z", "-1"], ["ZPOPMIN", "noz"], ["ZPOPMIN", "noz", "3"],
    ["ZPOPMIN", "z", "100"], ["EXISTS", "z"], ["ZADD", "s1", "1", "a"], ["ZRANGE", "z", "a", "b"],
    ["ZADD", "zt", "1", "b", "1", "a", "1", "c", "0", "z"], ["ZRANGE", "zt", "0", "-1", "WITHSCORES"], ["ZRANK", "zt", "c"],
    ["ZADD", "zs", "1", "a", "2", "b", "2.5", "c", "3", "d", "-1", "m", "inf", "i"],
    ["ZRANGE", "zs", "1", "3", "BYSCORE"], ["ZRANGE", "zs", "(1", "3", "BYSCORE", "WITHSCORES"],
    ["ZRANGE", "zs", "-inf", "+inf", "BYSCORE"], ["ZRANGE", "zs", "(2", "(3", "BYSCORE"],
    ["ZRANGE", "zs", "3", "1", "BYSCORE", "REV"], ["ZRANGE", "zs", "+inf", "-inf", "BYSCORE", "REV", "WITHSCORES"],
    ["ZRANGE", "zs", "-inf", "+inf", "BYSCORE", "LIMIT", "1", "2"], ["ZRANGE", "zs", "-inf", "+inf", "BYSCORE", "LIMIT", "2", "-1"],
    ["ZRANGE", "zs", "+inf", "-inf", "BYSCORE", "REV", "LIMIT", "1", "3"], ["ZRANGE", "zs", "0", "-1", "LIMIT", "1", "2"],
    ["ZRANGE", "zs", "x", "3", "BYSCORE"], ["ZRANGE", "zs", "5", "9", "BYSCORE"], ["ZRANGE", "zs", "3", "1", "BYSCORE"],
    ["ZRANGE", "zs", "-inf", "+inf", "BYSCORE", "LIMIT", "-1", "2"], ["ZRANGE", "nozs", "0", "1", "BYSCORE"],
    ["ZRANGEBYSCORE", "zs", "1", "3"], ["ZRANGEBYSCORE", "zs", "(1", "+inf", "WITHSCORES", "LIMIT", "0", "2"],
    # server
    ["PING"], ["PING", "hello"], ["PING", "a", "b"], ["ECHO", "hi"], ["ECHO"],
    ["CONFIG", "GET", "appendonly"], ["CONFIG", "SET", "appendonly", "no"], ["CONFIG", "SET", "save", ""],
    ["CONFIG", "GET", "save"], ["CONFIG", "SET", "save", "100 10"], ["CONFIG", "GET", "save"],
    ["CLIENT", "GETNAME"], ["CLIENT", "SETNAME", "myname"], ["CLIENT", "GETNAME"], ["CLIENT", "SETNAME", "bad name"],
    ["CLIENT", "KILL", "1.2.3.4:5"], ["CLIENT", "KILL", "TYPE", "foo"], ["CLIENT", "KILL", "ID", "abc"],
    ["CLIENT", "KILL", "ID", "0"], ["CLIENT", "KILL", "TYPE", "pubsub"], ["CLIENT", "KILL", "TYPE", "replica"],
    ["CLIENT", "KILL", "TYPE", "slave"], ["CLIENT", "KILL", "TYPE", "master"], ["CLIENT", "KILL", "TYPE", "normal"],
    ["CLIENT", "KILL", "ADDR", "1.2.3.4:5"], ["CLIENT", "KILL", "TYPE"], ["CLIENT", "KILL", "SKIPME", "maybe"],
    ["CLIENT", "KILL", "ID", "99999", "SKIPME", "no"], ["CONFIG", "SET", "repl-backlog-size", "1000"],
    ["CONFIG", "SET", "repl-backlog-size", "2097152"], ["CONFIG", "GET", "repl-backlog-size"],
    ["CONFIG", "SET", "rdbcompression", "maybe"], ["CONFIG", "SET", "rdbcompression", "no"],
    ["CONFIG", "GET", "rdbcompression"], ["CONFIG", "SET", "rdbcompression", "yes"],
    ["NOSUCHCOMMAND", "a", "b"], ["nosuchcommand"], ["get", "s4"], ["GeT", "s4"], ["AUTH", "x"],
    ["COMMAND", "INFO", "nosuch"],
    # transactions
    ["MULTI"], ["SET", "tx", "1"], ["INCR", "tx"], ["GET", "tx"], ["EXEC"], ["GET", "tx"],
    ["MULTI"], ["MULTI"], ["SET", "tx", "9"], ["EXEC"], ["GET", "tx"],
    ["MULTI"], ["SET", "tx"], ["NOSUCH"], ["SET", "tx", "3"], ["EXEC"], ["GET", "tx"],
    ["EXEC"], ["DISCARD"], ["MULTI"], ["SET", "tx", "2"], ["DISCARD"], ["GET", "tx"],
    ["MULTI"], ["LPUSH", "s1", "x"], ["SET", "tx", "5"], ["EXEC"], ["GET", "tx"], ["MULTI"], ["EXEC"],
    # keyspace-wide
    ("sort", ["KEYS", "s*"]), ("sort", ["KEYS", "?[0-9]"]), ["KEYS", "nomatch*"], ["DBSIZE"], ["FLUSHDB"], ["DBSIZE"],
    ["RANDOMKEY"], ["SET", "only", "1"], ["RANDOMKEY"], ["FLUSHALL"], ["KEYS", "*"],
]

# Commands added for issue 13: each with its error cases, side by side.
SCRIPT += [
    # strings
    ["SETEX", "sx", "100", "v"], ["TTL", "sx"], ["GET", "sx"], ["SETEX", "sx", "0", "v"], ["SETEX", "sx", "-1", "v"],
    ["SETEX", "sx", "x", "v"], ["SETEX", "sx", "9223372036854775807", "v"], ["SETEX", "sx", "10"],
    ["PSETEX", "px", "100000", "v"], ("approx", ["PTTL", "px"]), ["PSETEX", "px", "0", "v"], ["GET", "px"],
    ["SET", "gd", "val"], ["GETDEL", "gd"], ["GETDEL", "gd"], ["EXISTS", "gd"], ["LPUSH", "gdl", "x"], ["GETDEL", "gdl"],
    ["SET", "gx", "v"], ["GETEX", "gx"], ["GETEX", "gx", "EX", "100"], ["TTL", "gx"], ["GETEX", "gx", "PERSIST"],
    ["TTL", "gx"], ["GETEX", "gx", "PX", "200000"], ("approx", ["PTTL", "gx"]), ["GETEX", "gx", "EXAT", "4102444800"],
    ["EXPIRETIME", "gx"], ["GETEX", "gx", "PXAT", "4102444800123"], ["PEXPIRETIME", "gx"], ["EXPIRETIME", "gx"],
    ["GETEX", "gx", "EX", "0"], ["GETEX", "gx", "EX", "x"], ["GETEX", "gx", "EX"], ["GETEX", "gx", "PERSIST", "EX", "1"],
    ["GETEX", "gx", "EX", "1", "PX", "1"], ["GETEX", "gx", "FOO"], ["GETEX", "nokey", "EX", "10"], ["GETEX", "gdl"],
    ["GETEX", "gx", "EXAT", "1"], ["EXISTS", "gx"],
    ["SETRANGE", "sr", "5", "abc"], ["GET", "sr"], ["SETRANGE", "sr", "0", "XY"], ["GET", "sr"], ["SETRANGE", "sr", "1", ""],
    ["SETRANGE", "srn", "3", ""], ["EXISTS", "srn"], ["SETRANGE", "sr", "-1", "x"], ["SETRANGE", "sr", "x", "x"],
    ["SETRANGE", "sr", "536870912", "x"], ["SETRANGE", "gdl", "0", "x"], ["STRLEN", "sr"],
    ["SET", "gr", "Hello World"], ["GETRANGE", "gr", "0", "4"], ["GETRANGE", "gr", "-5", "-1"], ["GETRANGE", "gr", "-1", "-5"],
    ["GETRANGE", "gr", "5", "2"], ["GETRANGE", "gr", "0", "100"], ["GETRANGE", "gr", "-100", "2"], ["GETRANGE", "gr", "20", "30"],
    ["GETRANGE", "nokey", "0", "1"], ["GETRANGE", "gr", "x", "1"], ["GETRANGE", "gdl", "0", "1"], ["SUBSTR", "gr", "1", "3"],
    ["SET", "fl", "10.50"], ["INCRBYFLOAT", "fl", "0.1"], ["INCRBYFLOAT", "fl", "-5"], ["INCRBYFLOAT", "fl", "5.0e3"],
    ["INCRBYFLOAT", "nf", "3"], ["INCRBYFLOAT", "nf", "-3"], ["INCRBYFLOAT", "fl", "x"], ["INCRBYFLOAT", "fl", "inf"],
    ["INCRBYFLOAT", "fl", " 1"], ["INCRBYFLOAT", "gr", "1"], ["INCRBYFLOAT", "gdl", "1"], ["INCRBYFLOAT", "fl", "1e308"],
    ["INCRBYFLOAT", "fl", "1.5e-10"], ["SET", "fe", "1", "EX", "100"], ["INCRBYFLOAT", "fe", "1"], ["TTL", "fe"],
    ["MSETNX", "mn1", "a", "mn2", "b"], ["MSETNX", "mn2", "x", "mn3", "y"], ["MGET", "mn1", "mn2", "mn3"],
    ["MSETNX", "mn4", "a", "mn4", "b"], ["GET", "mn4"], ["MSETNX", "mn5"], ["MSETNX", "mn5", "a", "mn6"],
    # keys
    ["SET", "rn1", "a"], ["SET", "rn2", "b"], ["RENAMENX", "rn1", "rn2"], ["RENAMENX", "rn1", "rn3"], ["GET", "rn3"],
    ["RENAMENX", "rn3", "rn3"], ["RENAMENX", "nokey", "x"], ["EXISTS", "rn1"],
    ["SET", "cp", "v", "EX", "100"], ["COPY", "cp", "cp2"], ["GET", "cp2"], ["TTL", "cp2"], ["COPY", "cp", "cp2"],
    ["SET", "cp", "w"], ["COPY", "cp", "cp2", "REPLACE"], ["GET", "cp2"], ["TTL", "cp2"], ["COPY", "cp", "cp"],
    ["COPY", "nokey", "cp3"], ["COPY", "cp", "cp3", "DB", "0"], ["COPY", "cp", "cp4", "DB", "x"],
    ["COPY", "cp", "cp4", "FOO"], ["COPY", "cp", "cp4", "DB"], ["RPUSH", "cpl", "a", "b", "c"], ["COPY", "cpl", "cpl2"],
    ["LRANGE", "cpl2", "0", "-1"], ["RPUSH", "cpl2", "d"], ["LLEN", "cpl"], ["HSET", "cph", "f", "v", "g", "w"],
    ["COPY", "cph", "cph2"], ("sort", ["HGETALL", "cph2"]), ["SADD", "cps", "a", "b"], ["COPY", "cps", "cps2"],
    ("sort", ["SMEMBERS", "cps2"]), ["ZADD", "cpz", "1", "a", "2", "b"], ["COPY", "cpz", "cpz2"],
    ["ZRANGE", "cpz2", "0", "-1", "WITHSCORES"], ["COPY", "cpz", "cp2", "REPLACE"], ["TYPE", "cp2"], ["TTL", "cp2"],
    ["EXPIRETIME", "nokey"], ["EXPIRETIME", "cp"], ["PEXPIRETIME", "cp"], ["EXPIREAT", "cp", "4102444800"],
    ["EXPIRETIME", "cp"], ["PEXPIRETIME", "cp"], ["PEXPIREAT", "cp", "4102444800499"], ["EXPIRETIME", "cp"],
    ["PEXPIREAT", "cp", "4102444800500"], ["EXPIRETIME", "cp"], ["TOUCH", "cp", "nokey", "cpl"],
    # TYPE / TTL edge cases
    ["SET", "et", "v", "PX", "1"], ("sleep", 0.05), ["TYPE", "et"], ["TTL", "et"], ["PTTL", "et"],
    ["EXISTS", "et"], ["TYPE", "cpl"], ["TYPE", "cph"], ["TYPE", "cps"], ["TYPE", "cpz"], ["TTL", "cpl"],
    ["EXPIRE", "cpl", "100"], ["TTL", "cpl"], ["RPUSH", "cpl", "z"], ["TTL", "cpl"], ["SET", "cpl", "s"], ["TTL", "cpl"],
    ["TYPE"], ["TTL"], ["TTL", "a", "b"],
    # lists
    ["RPUSH", "ll", "a", "b", "c", "a", "d", "a", "e"], ["LPOS", "ll", "a"], ["LPOS", "ll", "a", "RANK", "2"],
    ["LPOS", "ll", "a", "RANK", "-1"], ["LPOS", "ll", "a", "RANK", "-2"], ["LPOS", "ll", "a", "COUNT", "0"],
    ["LPOS", "ll", "a", "COUNT", "2"], ["LPOS", "ll", "a", "RANK", "-1", "COUNT", "2"], ["LPOS", "ll", "a", "MAXLEN", "3"],
    ["LPOS", "ll", "a", "COUNT", "0", "MAXLEN", "4"], ["LPOS", "ll", "z"], ["LPOS", "ll", "z", "COUNT", "1"],
    ["LPOS", "ll", "a", "RANK", "5"], ["LPOS", "ll", "a", "RANK", "0"], ["LPOS", "ll", "a", "COUNT", "-1"],
    ["LPOS", "ll", "a", "COUNT", "x"], ["LPOS", "ll", "a", "MAXLEN", "-1"], ["LPOS", "ll", "a", "RANK", "x"],
    ["LPOS", "ll", "a", "FOO"], ["LPOS", "ll", "a", "RANK"], ["LPOS", "nol", "a"], ["LPOS", "nol", "a", "COUNT", "0"],
    ["LPOS", "gr", "a"], ["LREM", "ll", "1", "a"], ["LRANGE", "ll", "0", "-1"], ["LREM", "ll", "-1", "a"],
    ["LRANGE", "ll", "0", "-1"], ["RPUSH", "ll", "a", "a"], ["LREM", "ll", "0", "a"], ["LRANGE", "ll", "0", "-1"],
    ["LREM", "ll", "x", "a"], ["LREM", "nol", "0", "a"], ["LREM", "gr", "0", "a"],
    ["LSET", "ll", "0", "B"], ["LSET", "ll", "-1", "E"], ["LRANGE", "ll", "0", "-1"], ["LSET", "ll", "10", "x"],
    ["LSET", "ll", "x", "x"], ["LSET", "nol", "0", "x"], ["LSET", "gr", "0", "x"],
    ["LINSERT", "ll", "BEFORE", "c", "X"], ["LINSERT", "ll", "AFTER", "E", "Y"], ["LINSERT", "ll", "AFTER", "nope", "Z"],
    ["LRANGE", "ll", "0", "-1"], ["LINSERT", "ll", "MIDDLE", "c", "X"], ["LINSERT", "nol", "BEFORE", "c", "X"],
    ["LINSERT", "gr", "BEFORE", "c", "X"],
    ["LTRIM", "ll", "1", "-2"], ["LRANGE", "ll", "0", "-1"], ["LTRIM", "ll", "-100", "100"], ["LRANGE", "ll", "0", "-1"],
    ["LTRIM", "ll", "x", "1"], ["LTRIM", "nol", "0", "1"], ["LTRIM", "gr", "0", "1"], ["LTRIM", "ll", "5", "1"],
    ["EXISTS", "ll"], ["RPUSH", "lm", "1", "2", "3"], ["LMOVE", "lm", "lm2", "LEFT", "RIGHT"],
    ["LMOVE", "lm", "lm2", "RIGHT", "LEFT"], ["LRANGE", "lm2", "0", "-1"], ["LMOVE", "lm", "lm", "LEFT", "RIGHT"],
    ["LRANGE", "lm", "0", "-1"], ["LMOVE", "lm", "lm2", "LEFT", "LEFT"], ["EXISTS", "lm"], ["LMOVE", "lm", "lm2", "LEFT", "LEFT"],
    ["LMOVE", "lm2", "gr", "LEFT", "LEFT"], ["LMOVE", "gr", "lm2", "LEFT", "LEFT"], ["LMOVE", "lm2", "x", "UP", "LEFT"],
    ["RPOPLPUSH", "lm2", "lm3"], ["LRANGE", "lm3", "0", "-1"], ["RPOPLPUSH", "nol", "lm3"],
    ["LPUSHX", "nol", "a"], ["EXISTS", "nol"], ["LPUSHX", "lm3", "a", "b"], ["RPUSHX", "lm3", "c"], ["LRANGE", "lm3", "0", "-1"],
    ["RPUSHX", "gr", "c"],
    # hashes
    ["HSET", "hh", "a", "1", "b", "2.5", "c", "x"], ("sort", ["HKEYS", "hh"]), ("sort", ["HVALS", "hh"]), ["HKEYS", "noh"],
    ["HVALS", "noh"], ["HKEYS", "gr"], ["HSTRLEN", "hh", "b"], ["HSTRLEN", "hh", "z"], ["HSETNX", "hh", "a", "9"],
    ["HSETNX", "hh", "d", "4"], ["HGET", "hh", "d"], ["HSETNX", "gr", "a", "1"], ["HSETNX", "nh", "a", "1"],
    ["HINCRBYFLOAT", "hh", "b", "0.1"], ["HINCRBYFLOAT", "hh", "a", "-1.5"], ["HINCRBYFLOAT", "hh", "n", "3e2"],
    ["HINCRBYFLOAT", "hh", "c", "1"], ["HINCRBYFLOAT", "hh", "a", "x"], ["HINCRBYFLOAT", "hh", "a", "inf"],
    ["HINCRBYFLOAT", "hh", "a", "1e308"], ["HINCRBYFLOAT", "hh", "a", "1.7e308"], ["HINCRBYFLOAT", "gr", "a", "1"],
    ["HINCRBYFLOAT", "nh2", "f", "1.25"], ["HGET", "nh2", "f"],
    ["HRANDFIELD", "noh"], ["HRANDFIELD", "noh", "3"], ["HRANDFIELD", "hh", "0"], ["HRANDFIELD", "hh", "x"],
    ["HRANDFIELD", "hh", "1", "FOO"], ["HRANDFIELD", "hh", "-9223372036854775808"], ["HRANDFIELD", "gr"],
    ("sort", ["HRANDFIELD", "hh", "100"]), ("sort", ["HRANDFIELD", "hh", "100", "WITHVALUES"]),
    ["HSET", "h1", "f", "v"], ["HRANDFIELD", "h1"], ["HRANDFIELD", "h1", "-3", "WITHVALUES"], ["HRANDFIELD", "h1", "2"],
    ("scan", ["HSCAN", "hh", "0"]), ("scan", ["HSCAN", "hh", "0", "MATCH", "[ab]"]), ("scan", ["HSCAN", "hh", "0", "COUNT", "100"]),
    ["HSCAN", "noh", "0"], ["HSCAN", "noh", "0", "FOO"], ["HSCAN", "hh", "x"], ["HSCAN", "hh", "0", "COUNT", "0"],
    ["HSCAN", "hh", "0", "COUNT", "x"], ["HSCAN", "hh", "0", "FOO"], ["HSCAN", "hh", "0", "TYPE", "string"], ["HSCAN", "gr", "0"],
    # sets
    ["SADD", "sa", "a", "b", "c", "d"], ["SADD", "sb", "c", "d", "e"], ["SADD", "sc", "d", "e", "f"],
    ("sort", ["SINTER", "sa", "sb"]), ("sort", ["SINTER", "sa", "sb", "sc"]), ["SINTER", "sa", "nos"],
    ("sort", ["SUNION", "sa", "sb", "nos"]), ("sort", ["SDIFF", "sa", "sb"]), ("sort", ["SDIFF", "sa", "nos", "sc"]),
    ["SDIFF", "nos", "sa"], ["SINTER", "sa", "gr"], ["SUNION", "gr", "nos"], ["SDIFF", "sa", "gr"], ["SINTER", "nos", "gr"],
    ["SINTERSTORE", "sd", "sa", "sb"], ("sort", ["SMEMBERS", "sd"]), ["SUNIONSTORE", "sd", "sa", "sc"], ["SCARD", "sd"],
    ["SDIFFSTORE", "sd", "sa", "sb"], ("sort", ["SMEMBERS", "sd"]), ["SINTERSTORE", "sd", "sa", "nos"], ["EXISTS", "sd"],
    ["SET", "sd", "x", "EX", "100"], ["SUNIONSTORE", "sd", "sa"], ["TTL", "sd"], ["TYPE", "sd"], ["SDIFFSTORE", "sd", "sa", "sa"],
    ["EXISTS", "sd"], ["SINTERSTORE", "sd", "gr"], ["SUNIONSTORE", "sd"], ["SINTERSTORE", "sa", "sa", "sb"],
    ("sort", ["SMEMBERS", "sa"]), ["SMISMEMBER", "sb", "c", "z", "e"], ["SMISMEMBER", "nos", "a"], ["SMISMEMBER", "gr", "a"],
    ["SMOVE", "sb", "sm", "c"], ["SMOVE", "sb", "sm", "c"], ["SMOVE", "sb", "sm", "zz"], ("sort", ["SMEMBERS", "sm"]),
    ["SMOVE", "sb", "sb", "d"], ["SMOVE", "sb", "sb", "zz"], ["SMOVE", "nos", "sm", "a"], ["SMOVE", "sb", "gr", "d"],
    ["SMOVE", "gr", "sb", "d"], ["SMOVE", "sb", "sm", "d"], ["SMOVE", "sb", "sm", "e"], ["EXISTS", "sb"],
    ["SRANDMEMBER", "nos"], ["SRANDMEMBER", "nos", "2"], ["SADD", "s1m", "only"], ["SRANDMEMBER", "s1m"],
    ["SRANDMEMBER", "s1m", "-3"], ("sort", ["SRANDMEMBER", "sc", "10"]), ["SRANDMEMBER", "sc", "0"],
    ["SRANDMEMBER", "sc", "1", "2"], ["SRANDMEMBER", "sc", "x"],
    ("scan", ["SSCAN", "sc", "0"]), ("scan", ["SSCAN", "sc", "0", "MATCH", "e*"]), ["SSCAN", "nos", "0"], ["SSCAN", "gr", "0"],
    # sorted sets
    ["ZADD", "zr", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e"], ["ZINCRBY", "zr", "2.5", "a"], ["ZINCRBY", "zr", "1", "new"],
    ["ZINCRBY", "zr", "x", "a"], ["ZINCRBY", "zr", "nan", "a"], ["ZINCRBY", "gr", "1", "a"], ["ZINCRBY", "zr", "inf", "e"],
    ["ZINCRBY", "zr", "-inf", "e"], ["ZREVRANGE", "zr", "0", "-1"], ["ZREVRANGE", "zr", "0", "1", "WITHSCORES"],
    ["ZREVRANGE", "zr", "0", "-1", "LIMIT", "0", "1"], ["ZREVRANGE", "zr", "0", "-1", "FOO"], ["ZREVRANGE", "noz", "0", "1"],
    ["ZREVRANK", "zr", "a"], ["ZREVRANK", "zr", "b"], ["ZREVRANK", "zr", "zz"], ["ZREVRANK", "noz", "a"], ["ZREVRANK", "gr", "a"],
    ["ZCOUNT", "zr", "-inf", "+inf"], ["ZCOUNT", "zr", "(1", "3.5"], ["ZCOUNT", "zr", "4", "1"], ["ZCOUNT", "zr", "x", "1"],
    ["ZCOUNT", "noz", "0", "1"], ["ZCOUNT", "gr", "0", "1"], ["ZCOUNT", "zr", "(3", "(3"],
    ["ZREVRANGEBYSCORE", "zr", "+inf", "-inf"], ["ZREVRANGEBYSCORE", "zr", "(4", "2", "WITHSCORES", "LIMIT", "1", "5"],
    ["ZRANGEBYSCORE", "zr", "1", "2", "REV"], ["ZRANGEBYSCORE", "zr", "1", "2", "BYLEX"],
    ["ZADD", "zl", "0", "a", "0", "b", "0", "c", "0", "d", "0", "e", "0", "ee", "0", "f"],
    ["ZRANGEBYLEX", "zl", "-", "+"], ["ZRANGEBYLEX", "zl", "[b", "(e"], ["ZRANGEBYLEX", "zl", "(b", "[e"],
    ["ZRANGEBYLEX", "zl", "[e", "+", "LIMIT", "1", "1"], ["ZRANGEBYLEX", "zl", "-", "+", "LIMIT", "2", "-1"],
    ["ZRANGEBYLEX", "zl", "+", "-"], ["ZRANGEBYLEX", "zl", "a", "b"], ["ZRANGEBYLEX", "zl", "", "+"],
    ["ZRANGEBYLEX", "zl", "-", "+", "WITHSCORES"], ["ZRANGEBYLEX", "zl", "-", "+", "LIMIT", "0"], ["ZRANGEBYLEX", "noz", "-", "+"],
    ["ZREVRANGEBYLEX", "zl", "+", "-"], ["ZREVRANGEBYLEX", "zl", "(e", "[b", "LIMIT", "0", "2"], ["ZREVRANGEBYLEX", "zl", "-", "+"],
    ["ZRANGE", "zl", "[b", "[d", "BYLEX"], ["ZRANGE", "zl", "[d", "[b", "BYLEX", "REV"], ["ZRANGE", "zl", "-", "+", "BYLEX", "LIMIT", "1", "2"],
    ["ZRANGE", "zl", "-", "+", "BYLEX", "WITHSCORES"], ["ZRANGE", "zl", "-", "+", "BYLEX", "BYSCORE"], ["ZRANGE", "zl", "0", "1", "REV", "REV"],
    ["ZLEXCOUNT", "zl", "-", "+"], ["ZLEXCOUNT", "zl", "[b", "(ee"], ["ZLEXCOUNT", "zl", "x", "+"], ["ZLEXCOUNT", "noz", "-", "+"],
    ["ZREMRANGEBYLEX", "zl", "[e", "[ee"], ["ZRANGE", "zl", "0", "-1"], ["ZREMRANGEBYLEX", "zl", "a", "b"],
    ["ZREMRANGEBYRANK", "zr", "0", "1"], ["ZRANGE", "zr", "0", "-1", "WITHSCORES"], ["ZREMRANGEBYRANK", "zr", "-1", "-1"],
    ["ZREMRANGEBYRANK", "zr", "5", "10"], ["ZREMRANGEBYRANK", "zr", "x", "1"], ["ZREMRANGEBYRANK", "noz", "0", "1"],
    ["ZREMRANGEBYSCORE", "zr", "(3", "4"], ["ZRANGE", "zr", "0", "-1", "WITHSCORES"], ["ZREMRANGEBYSCORE", "zr", "x", "1"],
    ["ZREMRANGEBYSCORE", "zr", "-inf", "+inf"], ["EXISTS", "zr"], ["ZREMRANGEBYSCORE", "gr", "0", "1"],
    ["ZADD", "zm", "1.5", "a", "2", "b"], ["ZMSCORE", "zm", "a", "zz", "b"], ["ZMSCORE", "noz", "a", "b"], ["ZMSCORE", "gr", "a"],
    ["ZPOPMAX", "zm"], ["ZPOPMAX", "zm", "5"], ["ZPOPMAX", "zm"], ["ZPOPMAX", "zm", "-1"], ["ZPOPMAX", "gr"],
    ["ZADD", "zq", "1", "a", "2", "b"], ("scan", ["ZSCAN", "zq", "0"]), ["ZSCAN", "noz", "0"], ["ZSCAN", "zq", "0", "NOVALUES"],
    ["ZRANDMEMBER", "noz"], ["ZRANDMEMBER", "zq", "0"], ("sort", ["ZRANDMEMBER", "zq", "5"]),
    ["ZADD", "z1", "3", "x"], ["ZRANDMEMBER", "z1", "-2", "WITHSCORES"], ["ZRANDMEMBER", "z1", "1", "WITHVALUES"],
    ["ZADD", "u1", "1", "a", "2", "b", "3", "c"], ["ZADD", "u2", "10", "b", "20", "c", "30", "d"], ["SADD", "u3", "c", "d", "e"],
    ["ZUNION", "2", "u1", "u2", "WITHSCORES"], ["ZUNION", "3", "u1", "u2", "u3"], ["ZINTER", "2", "u1", "u2", "WITHSCORES"],
    ["ZINTER", "3", "u1", "u2", "u3", "WITHSCORES"], ["ZDIFF", "2", "u1", "u2", "WITHSCORES"], ["ZDIFF", "2", "u2", "u3"],
    ["ZUNION", "2", "u1", "u2", "WEIGHTS", "2", "0.5", "WITHSCORES"], ["ZUNION", "2", "u1", "u2", "AGGREGATE", "MIN", "WITHSCORES"],
    ["ZINTER", "2", "u1", "u2", "AGGREGATE", "MAX", "WITHSCORES"], ["ZUNION", "2", "u1", "nokey", "WITHSCORES"],
    ["ZINTER", "2", "u1", "nokey"], ["ZDIFF", "1", "nokey"], ["ZDIFF", "2", "u1", "nokey", "WITHSCORES"],
    ["ZDIFF", "3", "u1", "nokey", "u2"], ["ZDIFFSTORE", "ud2", "2", "u1", "nokey"], ["ZRANGE", "ud2", "0", "-1"], ["ZUNION", "2", "u1", "u2", "WEIGHTS", "1", "x"],
    ["ZUNION", "2", "u1", "u2", "WEIGHTS", "1"], ["ZUNION", "2", "u1", "u2", "AGGREGATE", "AVG"], ["ZUNION", "0", "u1"],
    ["ZUNION", "x", "u1"], ["ZUNION", "3", "u1", "u2"], ["ZUNION", "2", "u1", "gr"], ["ZDIFF", "2", "u1", "u2", "WEIGHTS", "1", "1"],
    ["ZADD", "ui", "inf", "a", "-inf", "b"], ["ZUNION", "2", "ui", "ui", "WITHSCORES"], ["ZUNION", "2", "ui", "u1", "WEIGHTS", "0", "1", "WITHSCORES"],
    ["ZUNIONSTORE", "ud", "2", "u1", "u2"], ["ZRANGE", "ud", "0", "-1", "WITHSCORES"], ["ZINTERSTORE", "ud", "2", "u1", "u2", "WEIGHTS", "1", "2"],
    ["ZRANGE", "ud", "0", "-1", "WITHSCORES"], ["ZDIFFSTORE", "ud", "2", "u1", "u3"], ["ZRANGE", "ud", "0", "-1", "WITHSCORES"],
    ["ZINTERSTORE", "ud", "2", "u1", "nokey"], ["EXISTS", "ud"], ["ZUNIONSTORE", "ud", "1", "u1", "WITHSCORES"],
    ["SET", "ud", "x", "EX", "100"], ["ZUNIONSTORE", "ud", "1", "u3"], ["TYPE", "ud"], ["TTL", "ud"], ["ZUNIONSTORE", "ud", "0", "u1"],
    # introspection
    ["SET", "oi", "12345"], ["OBJECT", "ENCODING", "oi"], ["SET", "oe", "short"], ["OBJECT", "ENCODING", "oe"],
    ["SET", "or", "x" * 45], ["OBJECT", "ENCODING", "or"], ["SET", "oi2", "123456789012345678901"], ["OBJECT", "ENCODING", "oi2"],
    ["OBJECT", "ENCODING", "nokey"], ["OBJECT", "REFCOUNT", "nokey"], ["OBJECT", "FOO", "oi"], ["OBJECT", "ENCODING"],
    ["MEMORY", "USAGE", "nokey"], ["MEMORY", "USAGE"], ["MEMORY", "USAGE", "oi", "SAMPLES", "x"], ["MEMORY", "FOO"],
    ["HELLO", "x"], ["HELLO", "2", "FOO"], ["HELLO", "2", "SETNAME", "a b"], ["HELLO", "2", "SETNAME"],
]

def sort_reply(raw):
    v = parse(raw)
    if isinstance(v, list):
        return sorted(v, key=repr)
    return v


def scan_reply(cmd, raw):
    v = parse(raw)
    if not isinstance(v, list):
        return v
    cursor, elems = v
    if cmd[0] in ("HSCAN", "ZSCAN"):  # field/value or member/score pairs
        elems = list(zip(elems[::2], elems[1::2]))
    return cursor, sorted(elems, key=repr)


def compare_script(ck, rs):
    a, b = Conn(ck.port), Conn(rs.port)
    bad = 0
    for item in SCRIPT:
        kind = item[0] if isinstance(item, tuple) else "exact"
        cmd = item[1] if isinstance(item, tuple) else item
        if kind == "sleep":  # let keys with a short TTL expire on both
            time.sleep(cmd)
            continue
        ra, rb = a.call(*cmd), b.call(*cmd)
        if kind == "sort":
            same = sort_reply(ra) == sort_reply(rb)
        elif kind == "scan":  # same cursor, same elements (order unspecified)
            same = scan_reply(cmd, ra) == scan_reply(cmd, rb)
        elif kind == "approx":  # a PTTL: the two servers ran it a few ms apart
            same = ra[:1] == rb[:1] == b":" and abs(parse(ra) - parse(rb)) < 1000
        else:
            same = ra == rb
        if not same:
            bad += 1
            print("MISMATCH %r\n  redis-ckpt:   %r\n  redis-server: %r" % (cmd, ra, rb))
    a.close()
    b.close()
    n = sum(1 for item in SCRIPT if not (isinstance(item, tuple) and item[0] == "sleep"))
    check(bad == 0, "%d of %d commands differ from redis-server" % (bad, n))
    print("ok: %d commands reply exactly as redis-server 7.0" % n)


# Two-client scenarios run on both servers; every reply is compared.  Steps:
# (client, "call", args) sends and reads one reply; "send" only sends (a
# blocking command); "read" reads one reply; "sleep" waits; "close" drops.
WATCH_STEPS = [
    ("a", "call", ["SET", "w", "1"]), ("a", "call", ["WATCH", "w"]), ("b", "call", ["SET", "w", "2"]),
    ("a", "call", ["MULTI"]), ("a", "call", ["SET", "w", "3"]), ("a", "call", ["EXEC"]), ("a", "call", ["GET", "w"]),
    ("a", "call", ["WATCH", "w"]), ("a", "call", ["MULTI"]), ("a", "call", ["INCR", "w"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["WATCH", "w", "w2"]), ("b", "call", ["SET", "other", "1"]), ("a", "call", ["MULTI"]),
    ("a", "call", ["GET", "w"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["WATCH", "w"]), ("a", "call", ["UNWATCH"]), ("b", "call", ["SET", "w", "5"]), ("a", "call", ["MULTI"]),
    ("a", "call", ["GET", "w"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["WATCH", "w"]), ("b", "call", ["DEL", "nokey", "w2"]), ("a", "call", ["MULTI"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["WATCH", "w"]), ("b", "call", ["FLUSHALL"]), ("a", "call", ["MULTI"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["WATCH", "absent"]), ("b", "call", ["SET", "x", "1"]), ("b", "call", ["FLUSHALL"]),
    ("a", "call", ["MULTI"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["MULTI"]), ("a", "call", ["WATCH", "x"]), ("a", "call", ["PING"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["SET", "w", "1"]), ("a", "call", ["WATCH", "w"]), ("b", "call", ["EXPIRE", "w", "100"]),
    ("a", "call", ["MULTI"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["WATCH", "w"]), ("a", "call", ["SET", "w", "own"]), ("a", "call", ["MULTI"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["WATCH", "w"]), ("a", "call", ["MULTI"]), ("a", "call", ["DISCARD"]), ("b", "call", ["SET", "w", "9"]),
    ("a", "call", ["MULTI"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["SET", "e", "1", "PX", "100"]), ("a", "call", ["WATCH", "e"]), ("a", "sleep", 0.2),
    ("a", "call", ["MULTI"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["SET", "e2", "1", "PX", "1"]), ("a", "sleep", 0.05), ("a", "call", ["WATCH", "e2"]),
    ("a", "call", ["GET", "e2"]), ("a", "call", ["MULTI"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["WATCH", "w"]), ("b", "call", ["LPUSH", "w", "x"]), ("b", "call", ["SADD", "s", "a"]),
    ("a", "call", ["WATCH", "s"]), ("b", "call", ["SADD", "s", "a"]), ("a", "call", ["MULTI"]), ("a", "call", ["EXEC"]),
    ("b", "call", ["SET", "r1", "v"]), ("a", "call", ["WATCH", "r2"]), ("b", "call", ["RENAME", "r1", "r2"]),
    ("a", "call", ["MULTI"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["WATCH", "r2", "s"]), ("b", "call", ["COPY", "r2", "r3"]), ("b", "call", ["SINTERSTORE", "s2", "s"]),
    ("a", "call", ["MULTI"]), ("a", "call", ["SET", "done", "1"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["WATCH", "s2"]), ("b", "call", ["SINTERSTORE", "s2", "s"]), ("a", "call", ["MULTI"]),
    ("a", "call", ["EXEC"]), ("b", "call", ["RPUSH", "tl", "a", "b"]), ("a", "call", ["WATCH", "tl"]),
    ("b", "call", ["LTRIM", "tl", "0", "-1"]), ("a", "call", ["MULTI"]), ("a", "call", ["EXEC"]),
    ("a", "call", ["WATCH", "tl"]), ("b", "call", ["LREM", "tl", "0", "zz"]), ("a", "call", ["MULTI"]),
    ("a", "call", ["EXEC"]), ("a", "call", ["WATCH"]),
]

BLOCK_STEPS = [
    ("a", "send", ["BLPOP", "bl", "0"]), ("b", "call", ["RPUSH", "bl", "x"]), ("a", "read", None),
    ("a", "call", ["BLPOP", "bl1", "bl2", "0.1"]), ("a", "call", ["BRPOP", "bl", "0.05"]),
    ("a", "send", ["BLPOP", "bl", "0"]), ("c", "send", ["BLPOP", "bl", "0"]), ("b", "call", ["RPUSH", "bl", "1", "2", "3"]),
    ("a", "read", None), ("c", "read", None), ("b", "call", ["LRANGE", "bl", "0", "-1"]),
    ("a", "call", ["BRPOP", "nol", "bl", "0"]),
    ("a", "call", ["MULTI"]), ("a", "call", ["BLPOP", "nol", "0"]), ("a", "call", ["EXEC"]),
    ("a", "send", ["BLPOP", "bl", "0"], ["PING"]), ("b", "call", ["RPUSH", "bl", "y"]), ("a", "read", None), ("a", "read", None),
    ("c", "send", ["BLPOP", "bl", "0"]), ("c", "close", None), ("b", "call", ["RPUSH", "bl", "z"]),
    ("b", "call", ["LLEN", "bl"]), ("b", "call", ["DEL", "bl"]),
    ("a", "send", ["BLPOP", "bl", "0"]), ("b", "call", ["MULTI"]), ("b", "call", ["RPUSH", "bl", "t"]),
    ("b", "call", ["LPOP", "bl"]), ("b", "call", ["EXEC"]), ("b", "call", ["RPUSH", "bl", "u"]), ("a", "read", None),
    ("a", "call", ["WATCH", "bl"]), ("a", "send", ["BLPOP", "bl", "0"]), ("b", "call", ["LPUSH", "bl", "v"]),
    ("a", "read", None), ("a", "call", ["MULTI"]), ("a", "call", ["EXEC"]),
    ("b", "call", ["SET", "str", "x"]), ("a", "call", ["BLPOP", "nol", "str", "0"]), ("a", "call", ["BLPOP", "bl", "x"]),
    ("a", "call", ["BLPOP", "bl", "-1"]), ("a", "call", ["BLPOP", "bl", "inf"]), ("a", "call", ["BLPOP", "bl"]),
]


def run_steps(srv, steps):
    conns = {}
    out = []
    for who, what, *args in steps:
        if what == "sleep":
            time.sleep(args[0])
            continue
        if who not in conns:
            conns[who] = srv.conn()
        c = conns[who]
        if what == "call":
            out.append(c.call(*args[0]))
        elif what == "send":
            c.send_raw(b"".join(encode(*a) for a in args))
            time.sleep(0.05)  # let the server block the client before the next step
        elif what == "read":
            out.append(c.read_reply())
        elif what == "close":
            c.close()
            del conns[who]
            time.sleep(0.05)
    for c in conns.values():
        c.close()
    return out


def compare_steps(ck, rs, steps, what):
    for srv in (ck, rs):
        c = srv.conn()
        c.call("FLUSHALL")
        c.close()
    ra, rb = run_steps(ck, steps), run_steps(rs, steps)
    for i, (x, y) in enumerate(zip(ra, rb)):
        check(x == y, "%s reply %d: redis-ckpt %r, redis-server %r" % (what, i, x, y))
    check(len(ra) == len(rb), "%s: %d replies vs %d" % (what, len(ra), len(rb)))
    print("ok: %s: %d replies in two-client scenarios equal redis-server's" % (what, len(ra)))

def test_blocking_across_checkpoint(ck):
    """A client blocked in BLPOP stays blocked across a checkpoint and is
    served by the first push after it; a timeout still fires while a
    checkpoint runs; a blocked client that disconnects takes nothing."""
    a, b = ck.conn(), ck.conn()
    b.call("FLUSHALL")
    b.send_raw(b"".join(encode("SET", "ballast:%d" % i, "x" * 1000) for i in range(20000)))
    for _ in range(20000):
        b.read_reply()
    a.send_raw(encode("BLPOP", "cq", "0"))
    time.sleep(0.05)
    check(b.call("BGSAVE") == b"+Background saving started\r\n", "BGSAVE")
    ck.wait_bgsave()
    check(b.call("RPUSH", "cq", "after") == b":1\r\n", "RPUSH after the checkpoint")
    check(a.read_reply() == b"*2\r\n$2\r\ncq\r\n$5\r\nafter\r\n", "blocked client served after BGSAVE")
    t0 = time.time()
    a.send_raw(encode("BLPOP", "cq", "0.2"))
    check(b.call("BGSAVE") == b"+Background saving started\r\n", "BGSAVE")
    check(a.read_reply() == b"*-1\r\n", "timeout during a checkpoint")
    check(time.time() - t0 < 5, "BLPOP 0.2 took %.1f s" % (time.time() - t0))
    ck.wait_bgsave()
    b.call("FLUSHALL")
    a.close()
    b.close()
    print("ok: BLPOP blocked across a checkpoint, served after it; timeout during one")

def info_memory(c):
    text = parse(c.call("INFO", "memory")).decode()
    return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)


def pipeline(c, cmds):
    c.send_raw(b"".join(encode(*cmd) for cmd in cmds))
    return [c.read_reply() for _ in cmds]


def test_memory(ck):
    """used_memory is the allocator's live bytes: it rises with data and
    drops after DEL and FLUSHALL; used_memory_peak keeps the highest value,
    ckpt_heap_extent the allocator's high-water mark; MEMORY USAGE counts a
    key's blocks."""
    c = ck.conn()
    c.call("FLUSHALL")
    base = int(info_memory(c)["used_memory"])
    n = 5000
    pipeline(c, [["SET", "m:%d" % i, "v" * 1000] for i in range(n)])
    full = int(info_memory(c)["used_memory"])
    check(full >= base + n * 1000, "used_memory %d after %d x 1000 bytes (base %d)" % (full, n, base))
    pipeline(c, [["DEL", "m:%d" % i] for i in range(n // 2)])
    half = int(info_memory(c)["used_memory"])
    check(half <= full - n // 2 * 1000, "used_memory %d after deleting half (was %d)" % (half, full))
    mu = parse(c.call("MEMORY", "USAGE", "m:%d" % (n - 1)))
    check(1000 < mu < 1300, "MEMORY USAGE of a 1000-byte string: %r" % mu)
    pipeline(c, [["RPUSH", "ml", "x" * 100] for _ in range(1000)])
    mu5, mu0 = parse(c.call("MEMORY", "USAGE", "ml")), parse(c.call("MEMORY", "USAGE", "ml", "SAMPLES", "0"))
    check(100000 < mu0 < 200000 and abs(mu5 - mu0) < mu0 // 10, "MEMORY USAGE of a list: %r, %r" % (mu5, mu0))
    check(c.call("FLUSHALL") == b"+OK\r\n", "FLUSHALL")
    m = info_memory(c)
    empty, peak, extent = int(m["used_memory"]), int(m["used_memory_peak"]), int(m["ckpt_heap_extent"])
    check(empty < base + 256 * 1024, "used_memory %d after FLUSHALL (base %d)" % (empty, base))
    check(peak >= full and extent >= peak, "used_memory_peak %d, ckpt_heap_extent %d, max seen %d" % (peak, extent, full))
    check(m["used_memory_human"].endswith(("B", "K", "M")), "used_memory_human %r" % m["used_memory_human"])
    c.close()
    print("ok: used_memory %d -> %d (%d keys) -> %d (half deleted) -> %d (FLUSHALL); peak %d; MEMORY USAGE"
          % (base, full, n, half, empty, peak))


def test_encoding_random_scan(ck):
    """What depends on internal encodings or randomness, checked by its
    properties: OBJECT ENCODING names the structure that holds the value;
    *RANDMEMBER/HRANDFIELD counts (distinct when positive, repeats when
    negative, pairs WITHVALUES/WITHSCORES); a full H/S/ZSCAN iteration
    returns every element with its value."""
    c = ck.conn()
    c.call("FLUSHALL")
    enc = [(["SET", "e1", "12345"], "int"), (["SET", "e2", "hello"], "embstr"), (["SET", "e3", "x" * 45], "raw"),
           (["RPUSH", "e4", "a"], "linkedlist"), (["HSET", "e5", "f", "v"], "hashtable"), (["SADD", "e6", "1"], "hashtable"),
           (["ZADD", "e7", "1", "a"], "skiplist")]
    for cmd, want in enc:
        c.call(*cmd)
        got = parse(c.call("OBJECT", "ENCODING", cmd[1]))
        check(got == want.encode(), "OBJECT ENCODING of %r: %r" % (cmd, got))
        check(parse(c.call("OBJECT", "REFCOUNT", cmd[1])) == 1, "OBJECT REFCOUNT")
    n = 3000
    pipeline(c, [["HSET", "bh", "f%d" % i, "v%d" % i] for i in range(n)])
    pipeline(c, [["SADD", "bs", "m%d" % i] for i in range(n)])
    pipeline(c, [["ZADD", "bz", str(i), "z%d" % i] for i in range(n)])
    fields = {b"f%d" % i: b"v%d" % i for i in range(n)}
    for key, extra, members in (("bh", "WITHVALUES", fields), ("bs", None, {b"m%d" % i: None for i in range(n)}),
                                ("bz", "WITHSCORES", {b"z%d" % i: b"%d" % i for i in range(n)})):
        cmd = "HRANDFIELD" if key == "bh" else "SRANDMEMBER" if key == "bs" else "ZRANDMEMBER"
        r = parse(c.call(cmd, key, "50"))
        check(len(r) == 50 and len(set(r)) == 50 and set(r) <= set(members), "%s 50: %r" % (cmd, r[:5]))
        r = parse(c.call(cmd, key, str(n + 10)))
        check(len(r) == n and set(r) == set(members), "%s more than the size: %d" % (cmd, len(r)))
        r = parse(c.call(cmd, key, "-100"))
        check(len(r) == 100 and set(r) <= set(members), "%s -100: %d" % (cmd, len(r)))
        check(parse(c.call(cmd, key)) in members, "%s without count" % cmd)
        if extra:
            r = parse(c.call(cmd, key, "-20", extra))
            check(len(r) == 40 and all(members[k] == v for k, v in zip(r[0::2], r[1::2])), "%s %s: %r" % (cmd, extra, r[:4]))
        scan = {"bh": "HSCAN", "bs": "SSCAN", "bz": "ZSCAN"}[key]
        seen, cursor, rounds = {}, b"0", 0
        while True:
            cursor, elems = parse(c.call(scan, key, cursor, "COUNT", "10"))
            rounds += 1
            if key == "bs":
                seen.update((e, None) for e in elems)
            else:
                seen.update(zip(elems[0::2], elems[1::2]))
            if cursor == b"0" or rounds > 10 * n:
                break
        check(seen == members, "%s: %d of %d elements in %d rounds" % (scan, len(seen), n, rounds))
        check(rounds > 10, "%s COUNT 10 over %d elements returned them in %d rounds" % (scan, n, rounds))
    c.call("FLUSHALL")
    c.close()
    print("ok: OBJECT ENCODING/REFCOUNT; HRANDFIELD/SRANDMEMBER/ZRANDMEMBER counts; full HSCAN/SSCAN/ZSCAN of %d" % n)

def test_pipelining(ck):
    c = Conn(ck.port)
    n = 5000
    c.send_raw(b"".join(encode("SET", "p:%d" % i, "v%d" % i) for i in range(n)) +
               b"".join(encode("GET", "p:%d" % i) for i in range(n)))
    for i in range(n):
        check(c.read_reply() == b"+OK\r\n", "pipelined SET %d" % i)
    for i in range(n):
        want = b"v%d" % i
        r = c.read_reply()
        check(r == b"$%d\r\n%s\r\n" % (len(want), want), "pipelined GET %d: %r" % (i, r))
    # a command split across many tiny writes
    msg = encode("SET", "split", "x" * 1000)
    for i in range(0, len(msg), 7):
        c.send_raw(msg[i:i + 7])
        time.sleep(0.0005 if i < 100 else 0)
    check(c.read_reply() == b"+OK\r\n", "split SET")
    # a big bulk argument (4 MiB) in one command
    big = os.urandom(4 << 20)
    check(c.call("SET", "bigval", big) == b"+OK\r\n", "4 MiB SET")
    check(c.call("GET", "bigval") == b"$%d\r\n%s\r\n" % (len(big), big), "4 MiB GET")
    c.close()
    print("ok: pipelining (%d+%d commands in one write), split writes, 4 MiB argument" % (n, n))


def read_until_pong(c):
    out = b""
    try:
        while not out.endswith(b"+PONG\r\n"):
            out += c.read_reply()
    except (EOFError, ConnectionResetError):
        out += b"<closed>"
    return out


def test_inline(ck, rs):
    cases = [b"PING\r\n", b"SET inl hello\r\n", b"GET inl\r\n", b"SET q \"a b\\x41\\n\"\r\n", b"GET q\r\n",
             b"SET sq 'it\\'s'\r\n", b"GET sq\r\n", b"   \r\n", b"ECHO \"\"\r\n",
             b"PING\nPING\n", b"DEL inl q sq\r\n", b"SET sq 'it''s'\r\n"]
    for data in cases:
        a, b = Conn(ck.port), Conn(rs.port)
        # the last case is a protocol error: no PING after it (the server
        # closes with the PING unread, and the RST could eat the reply)
        tail = b"" if data == cases[-1] else b"PING\r\n"
        a.send_raw(data + tail)
        b.send_raw(data + tail)
        ra, rb = read_until_pong(a), read_until_pong(b)
        check(ra == rb, "inline %r: redis-ckpt %r, redis-server %r" % (data, ra, rb))
        a.close()
        b.close()
    print("ok: %d inline command cases match redis-server" % len(cases))


BAD_INPUTS = [
    b"*abc\r\n", b"*1\r\n+foo\r\n", b"*1\r\n$-5\r\n", b"*1\r\n$536870913\r\n", b"*1\r\n$abc\r\n",
    b"*3000000000\r\n", b"SET a \"unbalanced\r\n", b"SET a 'x'y\r\n", b"*1\r\n" + b"1" * 70000,
    b"X" * 70000,
]


def test_bad_input(ck, rs):
    for data in BAD_INPUTS:
        replies = []
        for srv in (ck, rs):
            c = Conn(srv.port)
            c.send_raw(data)
            r = c.read_reply()
            closed = c.closed_by_peer()
            replies.append((r, closed))
            c.close()
        (ra, ca), (rb, cb) = replies
        check(ra.startswith(b"-ERR Protocol error: "), "bad input %r: reply %r" % (data[:40], ra))
        check(ra == rb, "bad input %r: redis-ckpt %r, redis-server %r" % (data[:40], ra, rb))
        check(ca, "bad input %r: redis-ckpt did not close the client" % data[:40])
        check(ck.alive(), "server died on bad input %r" % data[:40])
        c = Conn(ck.port)
        check(c.call("PING") == b"+PONG\r\n", "server does not answer after bad input %r" % data[:40])
        c.close()
    # a protocol error in the middle of a pipeline: earlier commands answered
    c = Conn(ck.port)
    c.send_raw(encode("SET", "pe", "1") + b"*1\r\n$x\r\n" + encode("GET", "pe"))
    check(c.read_reply() == b"+OK\r\n", "command before the protocol error")
    check(c.read_reply().startswith(b"-ERR Protocol error: invalid bulk length"), "protocol error reply")
    check(c.closed_by_peer(), "client closed after the protocol error")
    c.close()
    print("ok: %d malformed inputs: Redis's protocol error, that client closed, server goes on" % len(BAD_INPUTS))


def test_scan_and_expiry(ck):
    """SCAN visits every key (cursor kept across a growing table: incremental
    rehash), MATCH/TYPE filter; KEYS and RANDOMKEY agree; keys with a TTL
    disappear without being touched (periodic expiry)."""
    c = Conn(ck.port)
    c.call("FLUSHALL")
    n = 3000
    c.send_raw(b"".join(encode("SET", "sc:%d" % i, "v") for i in range(n)) + encode("RPUSH", "sc:list", "x"))
    for _ in range(n + 1):
        c.read_reply()
    seen, cursor, rounds = set(), b"0", 0
    while True:
        cursor, keys = parse(c.call("SCAN", cursor, "COUNT", "7"))
        seen.update(keys)
        rounds += 1
        if rounds == 5:  # grow the table in the middle of the scan
            c.send_raw(b"".join(encode("SET", "grow:%d" % i, "v") for i in range(5000)))
            for _ in range(5000):
                c.read_reply()
        if cursor == b"0":
            break
    want = {b"sc:%d" % i for i in range(n)} | {b"sc:list"}
    check(want <= seen, "SCAN missed %d keys present all along" % len(want - seen))
    _, lists = parse(c.call("SCAN", "0", "COUNT", "100000", "TYPE", "list"))
    check(lists == [b"sc:list"], "SCAN TYPE list: %r" % lists[:5])
    _, m = parse(c.call("SCAN", "0", "MATCH", "sc:1?", "COUNT", "100000"))
    check(sorted(m) == sorted(b"sc:1%d" % i for i in range(10)), "SCAN MATCH: %r" % m)
    check(len(parse(c.call("KEYS", "*"))) == n + 1 + 5000, "KEYS *")
    check(parse(c.call("EXISTS", parse(c.call("RANDOMKEY")))) == 1, "RANDOMKEY gives an existing key")
    c.call("FLUSHALL")
    c.send_raw(b"".join(encode("SET", "ttl:%d" % i, "v", "PX", "100") for i in range(500)))
    for _ in range(500):
        c.read_reply()
    c.call("SET", "stays", "v")
    # the expires set follows SET/EXPIRE/PERSIST/RENAME/DEL exactly
    for i in range(10):
        c.call("SET", "e:%d" % i, "v", "EX", "1000")
    c.call("PERSIST", "e:0")
    c.call("SET", "e:1", "w")               # SET drops the TTL
    c.call("SET", "e:2", "w", "KEEPTTL")    # ...unless KEEPTTL
    c.call("RENAME", "e:3", "r:3")          # moves with the key
    c.call("RENAME", "e:4", "e:5")          # overwrites a key with a TTL
    c.call("RENAME", "stays", "e:6")        # a key without TTL over one with
    c.call("DEL", "e:7")
    c.call("EXPIRE", "e:8", "-1")           # deletes
    c.call("SET", "stays", "v")
    check(parse(c.call("TTL", "e:5")) > 900 and parse(c.call("TTL", "r:3")) > 900, "TTL moved by RENAME")
    check(parse(c.call("TTL", "e:6")) == -1, "RENAME of a key without TTL")
    ks = parse(c.call("INFO", "keyspace")).decode()
    check(",expires=504," in ks, "expires count after SET/EXPIRE/PERSIST/RENAME/DEL: %r" % ks)
    for k in ("e:0", "e:1", "e:2", "r:3", "e:5", "e:6", "e:9"):
        c.call("DEL", k)
    end = time.time() + 10
    while time.time() < end and parse(c.call("DBSIZE")) > 1:
        time.sleep(0.1)
    check(parse(c.call("DBSIZE")) == 1, "500 expired keys not removed by the periodic cycle")
    c.call("FLUSHALL")
    c.close()
    print("ok: SCAN across a rehash, MATCH/TYPE, KEYS, RANDOMKEY; periodic expiry of 500 untouched keys")


def test_maxclients():
    srv = Server(args=["--save", "", "--maxclients", "3", "--heap-size", "64mb"])
    time.sleep(0.3)  # let the server see the readiness probe's connection go
    conns = [Conn(srv.port) for _ in range(3)]
    for c in conns:
        check(c.call("PING") == b"+PONG\r\n", "client within maxclients")
    extra = Conn(srv.port)
    r = extra.read_reply()
    check(r == b"-ERR max number of clients reached\r\n", "4th client: %r" % r)
    check(extra.closed_by_peer(), "4th client closed")
    conns[0].close()
    time.sleep(0.2)
    c = Conn(srv.port)
    check(c.call("PING") == b"+PONG\r\n", "a client after one left")
    for x in conns[1:] + [c]:
        x.close()  # or stop()'s SHUTDOWN connection would be refused
    time.sleep(0.2)
    srv.stop()
    print("ok: maxclients")


def test_oom():
    srv = Server(args=["--save", "", "--heap-size", "16mb"])
    c = srv.conn()
    val = b"v" * 100000
    c.call("RPUSH", "l", "x")  # for LINSERT and LSET below
    ok = 0
    r = b""
    for i in range(1000):
        r = c.call("SET", "k%d" % i, val)
        if r != b"+OK\r\n":
            break
        ok += 1
    want = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
    check(r == want, "SET into a full heap: %r" % r)
    check(ok > 10, "only %d values fit into a 16 MiB heap" % ok)
    # every other kind of write also gets the OOM reply, nothing crashes
    for cmd in (["RPUSH", "l", val], ["HSET", "h", "f", val], ["SADD", "s", val], ["ZADD", "z", "1", val],
                ["APPEND", "k0", val], ["MSET", "a", val, "b", val], ["SETEX", "sx", "100", val],
                ["SETRANGE", "k1", "200000", "x"], ["LINSERT", "l", "BEFORE", "x", val], ["LSET", "l", "0", val],
                ["HSETNX", "h", "g", val], ["COPY", "k0", "k0copy"]):
        for _ in range(200):
            r = c.call(*cmd)
            if r.startswith(b"-"):
                break
        check(r == want, "%s into a full heap: %r" % (cmd[0], r[:80]))
    check(c.call("GET", "k0")[:10] == b"$100000\r\nv"[:10] or c.call("STRLEN", "k0").startswith(b":"), "old data readable")
    check(c.call("DEL", *["k%d" % i for i in range(ok)]) == b":%d\r\n" % ok, "DEL frees")
    check(c.call("SET", "again", val) == b"+OK\r\n", "SET works again after DEL")
    check(c.call("PING") == b"+PONG\r\n", "alive")
    srv.stop()
    print("ok: OOM reply on a full heap (%d x 100 kB fit in 16 MiB), recovery after DEL" % ok)


# Before AUTH, with a password set: everything but AUTH, HELLO and QUIT is
# refused (issue 11 item 7: SHUTDOWN too), exactly as redis-server does.
AUTH_SCRIPT = [
    ["GET", "a"], ["SHUTDOWN"], ["SHUTDOWN", "NOSAVE"], ["SHUTDOWN", "SAVE"], ["CONFIG", "GET", "save"],
    ["FLUSHALL"], ["BGSAVE"], ["PING"], ["MULTI"], ["HELLO", "2"], ["AUTH", "wrong"], ["AUTH", "default", "wrong"],
    ["HELLO", "2", "AUTH", "default", "wrong"], ["GET", "a"], ["AUTH", "sekret"], ["SET", "a", "1"], ["GET", "a"],
]


def test_auth():
    ck = Server(args=["--save", "", "--requirepass", "sekret", "--heap-size", "64mb"])
    rs = Server(kind="redis", args=["--requirepass", "sekret"])
    a, b = ck.conn(), rs.conn()
    for cmd in AUTH_SCRIPT:
        ra, rb = a.call(*cmd), b.call(*cmd)
        check(ra == rb, "before/after AUTH %r: redis-ckpt %r, redis-server %r" % (cmd, ra, rb))
    check(ck.alive(), "SHUTDOWN without AUTH stopped the server")
    # HELLO AUTH authenticates in one step; its reply has Redis's shape
    for c in (ck.conn(), rs.conn()):
        v = parse(c.call("HELLO", "2", "AUTH", "default", "sekret", "SETNAME", "hi"))
        check(isinstance(v, list) and v[0::2] == [b"server", b"version", b"proto", b"id", b"mode", b"role", b"modules"]
              and v[5] == 2, "HELLO 2 AUTH: %r" % v)
        check(parse(c.call("CLIENT", "GETNAME")) == b"hi", "HELLO SETNAME")
        c.close()
    a.close()
    b.close()
    rs.stop()
    check(ck.stop() == 0 and not ck.alive(), "SHUTDOWN after AUTH")
    print("ok: requirepass: %d commands before/after AUTH as redis-server (SHUTDOWN refused without AUTH), "
          "HELLO AUTH" % len(AUTH_SCRIPT))


def test_bad_options():
    from rclib import BINARY
    for args, what in ((["--nosuchoption", "1"], "unknown option"), (["--port", "x"], "invalid --port"),
                       (["--snapshot-mode", "magic"], "invalid --snapshot-mode"),
                       (["--heap-size", "lots"], "invalid --heap-size")):
        p = subprocess.run([BINARY] + args, capture_output=True, text=True, timeout=30)
        check(p.returncode == 1, "%s: exit %d" % (args, p.returncode))
        check(what in p.stderr, "%s: stderr %r" % (args, p.stderr))
    print("ok: bad options exit 1 with a message")


def run_on_pty(argv, lines, timeout=20):
    """Runs argv on a pseudo-terminal, types lines, returns all output."""
    import pty
    import select
    master, slave = pty.openpty()
    # TERM=dumb: linenoise reads plain lines (no cursor-position queries)
    env = dict(os.environ, TERM="dumb")
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True, env=env)
    os.close(slave)
    out = b""
    end = time.time() + timeout
    pending = list(lines)
    last_write = 0.0
    while time.time() < end:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                d = os.read(master, 65536)
            except OSError:
                break
            if not d:
                break
            out += d
        elif pending and time.time() - last_write > 0.3:
            os.write(master, pending.pop(0).encode() + b"\r")
            last_write = time.time()
        if p.poll() is not None and not r:
            break
    if p.poll() is None:
        p.kill()
    p.wait()
    os.close(master)
    return out.decode(errors="replace")


def test_redis_cli(ck):
    # redis-cli on a terminal sends COMMAND DOCS at start-up (for its hints);
    # the session must show no error.
    out = run_on_pty(["redis-cli", "-p", str(ck.port)], ["SET clikey clival", "GET clikey", "QUIT"])
    check("clival" in out and "OK" in out, "redis-cli interactive output: %r" % out)
    check("ERR" not in out and "rror" not in out, "redis-cli printed an error: %r" % out)
    p = subprocess.run(["redis-cli", "-p", str(ck.port), "INFO", "persistence"], capture_output=True, text=True, timeout=30)
    check("rdb_bgsave_in_progress:0" in p.stdout and "ckpt_traps:" in p.stdout, "INFO persistence: %r" % p.stdout)
    print("ok: redis-cli interactive session and INFO")


def main():
    ck = Server(args=["--save", "", "--heap-size", "256mb"])
    rs = Server(kind="redis")
    compare_script(ck, rs)
    compare_steps(ck, rs, WATCH_STEPS, "WATCH/UNWATCH/MULTI/EXEC")
    compare_steps(ck, rs, BLOCK_STEPS, "BLPOP/BRPOP")
    test_blocking_across_checkpoint(ck)
    test_memory(ck)
    test_encoding_random_scan(ck)
    test_inline(ck, rs)
    test_bad_input(ck, rs)
    test_pipelining(ck)
    test_scan_and_expiry(ck)
    test_redis_cli(ck)
    rs.stop()
    ck.stop()
    test_maxclients()
    test_oom()
    test_auth()
    test_bad_options()
    print("PASS protocol")


if __name__ == "__main__":
    main()
