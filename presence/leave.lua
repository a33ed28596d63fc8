-- leave: ARGV[8] = conn whose socket ended.
remove_conn(ARGV[8], 'closed')
finish()
return 1
