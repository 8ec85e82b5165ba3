module weirbench

go 1.19
