#!/usr/bin/perl
# What Sisimai (Debian's libsisimai-perl 4.25.15) makes of each message: one
# tab-separated line per recipient, read by label.py. Run from this folder:
#   perl sisimai_labels.pl *.eml > sisimai-4.25.15.tsv
use strict;
use warnings;
use Sisimai;
for my $file (@ARGV) {
    my $found = Sisimai->make($file, 'delivered' => 1, 'vacation' => 1) || [];
    print join("\t", $file, 'NONE'), "\n" unless @$found;
    for my $r (@$found) {
        print join("\t", $file, $r->recipient->address, $r->deliverystatus,
            $r->reason, $r->smtpagent, $r->feedbacktype // '', $r->action // ''), "\n";
    }
}
