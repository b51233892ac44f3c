package main

const usage = `Ferry: an SFTP/FTP gateway that streams uploads into S3.

Usage:
  ferry serve [--config FILE]     run the gateway
  ferry check [--config FILE]     check the config, the users file and the host keys
  ferry user add NAME --home PREFIX [--password-stdin] [--key FILE|LINE]... [--perm LIST]
  ferry user passwd NAME          set a user's password (read from stdin)
  ferry user del NAME             remove a user
  ferry user list                 list users (never their password hashes)
  ferry user s3-key add|del|list NAME [ID]
                                  a user's S3 access keys (the secret is shown once)
  ferry user s3-policy NAME       the IAM policy confining a partner's AWS principal to NAME's home
  ferry events [--dir DIR] [--follow]
                                  print the embedded event bus's events as JSON lines
  ferry redrive [--dry-run] [--dir DIR | --queue URL|NAME...]
                                  send dead-lettered events back for delivery
  ferry trace KEY|TRANSFER-ID     one file's story: upload, events, outcome, notice
  ferry status [--since 24h] [--user U] [--dataset D] [--json]
                                  the files received since then and their state
  ferry hash-password             read a password on stdin, print its bcrypt hash
  ferry version                   print the version

--config defaults to ferry.yaml. The user commands edit the users file named by
--users FILE, or else the users_file of --config FILE.
Run "ferry COMMAND -h" for a command's options.
`
