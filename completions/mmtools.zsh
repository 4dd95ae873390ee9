#compdef mmtools

_mmtools_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _MMTOOLS_COMPLETE=complete_zsh mmtools)
}

compdef _mmtools_completion mmtools
